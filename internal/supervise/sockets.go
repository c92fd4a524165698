package supervise

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"bulwark/internal/memwatch"
)

// Who holds the app's address, found through /proc without forking: the
// listening sockets of an address come from /proc/net/{tcp,tcp6,unix}
// (their inodes), and a process holds one when a link in /proc/PID/fd reads
// "socket:[INODE]". A leftover app on the port would otherwise answer the
// health probe and be taken for the new one.

// freeWait bounds how long start waits for the address to become free:
// the workers of an instance we just stopped may still be dying.
const (
	freeWait = time.Second
	freePoll = 50 * time.Millisecond
)

// maxCmdline cuts a holder's command line to a readable length.
const maxCmdline = 200

// holder is a process holding a socket.
type holder struct {
	pid int
	cmd string
}

func (h holder) String() string {
	if h.pid == 0 {
		return h.cmd // known by its user only
	}
	if h.cmd == "" {
		return "pid " + strconv.Itoa(h.pid)
	}
	return fmt.Sprintf("pid %d (%s)", h.pid, h.cmd)
}

// AddrInUseError is returned when the app's address is held by a process
// that is not the app Bulwark started.
type AddrInUseError struct {
	// Addr is the address as configured ("host:port" or "unix:/path").
	Addr string
	// Holders are the processes holding it; empty when they cannot be
	// seen (another user's processes).
	Holders []string
}

func (e *AddrInUseError) Error() string {
	who := "another process (its PID is not visible to this user)"
	if len(e.Holders) > 0 {
		who = strings.Join(e.Holders, ", ")
	}
	return fmt.Sprintf("the app's address %s is already in use by %s: stop it, or let Bulwark choose the address with {port} or {socket}", e.Addr, who)
}

// checkFree returns an *AddrInUseError when something already listens on
// addr (a fixed upstream address), waiting up to freeWait for it to go.
// It returns nil when it cannot tell: the app's own bind then decides.
func checkFree(procRoot, dir, addr string) error {
	deadline := time.Now().Add(freeWait)
	for {
		inUse := addrInUse(addr)
		if !inUse {
			return nil
		}
		if time.Now().After(deadline) {
			e := &AddrInUseError{Addr: addr}
			inodes, err := listeningInodes(procRoot, dir, addr)
			var table *memwatch.Table
			if err == nil {
				table, err = memwatch.ReadTable(procRoot)
			}
			if err == nil {
				for _, h := range socketHolders(procRoot, inodes, table.PIDs()) {
					e.Holders = append(e.Holders, h.String())
				}
			}
			return e
		}
		time.Sleep(freePoll)
	}
}

// addrInUse reports whether another socket listens on addr: a TCP bind
// fails with EADDRINUSE, or a unix socket accepts a connection.
func addrInUse(addr string) bool {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			return false // absent, or a stale file the app may replace
		}
		c.Close()
		return true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}

// listeningInodes returns the inodes of the sockets listening on addr. A
// TCP listener on the wildcard address counts for every host. dir resolves
// a relative unix socket path (the app's working directory).
func listeningInodes(procRoot, dir, addr string) (map[uint64]bool, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		return unixListeners(filepath.Join(procRoot, "net", "unix"), filepath.Clean(path), dir)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("app address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("app address %q: bad port", addr)
	}
	ip := net.ParseIP(host) // nil for a name: any address matches
	out := map[uint64]bool{}
	var read int
	for _, f := range []string{"tcp", "tcp6"} {
		if err := tcpListeners(filepath.Join(procRoot, "net", f), ip, uint16(port), out); err == nil {
			read++
		}
	}
	if read == 0 {
		return nil, errors.New("cannot read /proc/net/tcp")
	}
	return out, nil
}

// tcpListeners adds to out the inodes of the sockets in LISTEN state in a
// /proc/net/tcp{,6} file that match ip (nil: any) and port.
func tcpListeners(file string, ip net.IP, port uint16, out map[uint64]bool) error {
	return eachTCPListener(file, ip, port, func(fields []string) {
		if inode, err := strconv.ParseUint(fields[9], 10, 64); err == nil && inode != 0 {
			out[inode] = true
		}
	})
}

// ListenerUIDs returns the user IDs that own the TCP sockets listening on
// addr ("host:port"; a wildcard listener counts for every host), read from
// /proc/net/tcp{,6} under procRoot ("" is /proc). The CLI uses it to check
// that a token file the admin server names belongs to whoever listens there.
func ListenerUIDs(procRoot, addr string) (map[uint32]bool, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: bad port", addr)
	}
	ip := net.ParseIP(host)
	out := map[uint32]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		_ = eachTCPListener(filepath.Join(procRoot, "net", f), ip, uint16(port), func(fields []string) {
			if uid, err := strconv.ParseUint(fields[7], 10, 32); err == nil {
				out[uint32(uid)] = true
			}
		})
	}
	return out, nil
}

// eachTCPListener calls fn with the fields of each socket in LISTEN state
// in a /proc/net/tcp{,6} file that matches ip (nil: any) and port.
func eachTCPListener(file string, ip net.IP, port uint16, fn func(fields []string)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		hexIP, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || uint16(p) != port {
			continue
		}
		local := procIP(hexIP)
		if local == nil || (ip != nil && !local.IsUnspecified() && !ip.IsUnspecified() && !local.Equal(ip)) {
			continue
		}
		fn(fields)
	}
	return sc.Err()
}

// procIP decodes an address of /proc/net/tcp: 32-bit words in host
// (little-endian) order.
func procIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	ip := make(net.IP, len(b))
	for w := 0; w < len(b); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = b[w+3], b[w+2], b[w+1], b[w]
	}
	return ip
}

// unixListeners returns the inodes of the listening unix sockets bound to
// path (a relative path in the table is taken from dir).
func unixListeners(file, path, dir string) (map[uint64]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[uint64]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[3] != "00010000" { // __SO_ACCEPTCON: listening
			continue
		}
		p := fields[7]
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if filepath.Clean(p) != path {
			continue
		}
		if inode, err := strconv.ParseUint(fields[6], 10, 64); err == nil && inode != 0 {
			out[inode] = true
		}
	}
	return out, sc.Err()
}

// socketHolders returns the processes among pids that hold one of inodes.
// Processes whose fds cannot be read (another user's) are skipped.
func socketHolders(procRoot string, inodes map[uint64]bool, pids []int) []holder {
	if len(inodes) == 0 {
		return nil
	}
	var out []holder
	for _, pid := range pids {
		fdDir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			n, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(n, "]"), 10, 64)
			if err == nil && inodes[inode] {
				out = append(out, holder{pid: pid, cmd: memwatch.Cmdline(procRoot, pid, maxCmdline)})
				break
			}
		}
	}
	return out
}

// foreignListener reports whether addr is served by someone else: its
// listening sockets are known, none belongs to root's process tree, and
// one is held by a process older than root (a leftover) or by one this
// user cannot see. It then names the holders it can see. A listener held
// only by processes started after root is taken as the app's own: a
// command such as `docker run -p` has its port held by docker-proxy,
// outside its tree. It reports false, too, when it cannot tell (no /proc,
// or no listening socket found for an address written another way).
func foreignListener(procRoot, dir, addr string, root int) (bool, []holder) {
	inodes, err := listeningInodes(procRoot, dir, addr)
	if err != nil || len(inodes) == 0 {
		return false, nil
	}
	table, err := memwatch.ReadTable(procRoot)
	if err != nil {
		return false, nil
	}
	tree := table.Tree(root)
	if len(socketHolders(procRoot, inodes, tree)) > 0 {
		return false, nil
	}
	others := socketHolders(procRoot, inodes, table.PIDs())
	others = slices.DeleteFunc(others, func(h holder) bool { return slices.Contains(tree, h.pid) })
	if len(others) == 0 {
		return true, nil // held by processes we cannot see
	}
	rootStart, ok := table.StartTicks(root)
	if !ok {
		return true, others
	}
	for _, h := range others {
		if t, ok := table.StartTicks(h.pid); !ok || t < rootStart {
			return true, others
		}
	}
	return false, nil
}

// strangerOnPort reports whether a port Bulwark picked for the app is
// listened on by another user: neither Bulwark's (the app runs as Bulwark
// does) nor root's (docker-proxy, for `docker run -p`). Another user could
// bind the port between the pick and the app's own bind and receive the
// app's requests. It reads /proc/net/tcp{,6}, which every user may read;
// the holders it returns are empty (another user's descriptors are not
// readable), so the error names the user.
func strangerOnPort(procRoot, addr string) (bool, []holder) {
	uids, err := ListenerUIDs(procRoot, addr)
	if err != nil {
		return false, nil
	}
	self := uint32(os.Geteuid())
	for uid := range uids {
		if uid != self && uid != 0 {
			return true, []holder{{cmd: "a process of uid " + strconv.FormatUint(uint64(uid), 10)}}
		}
	}
	return false, nil
}

// describeHolders names holders for a log line or an error.
func describeHolders(hs []holder) string {
	if len(hs) == 0 {
		return "another process (its PID is not visible to this user)"
	}
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.String()
	}
	return strings.Join(names, ", ")
}
