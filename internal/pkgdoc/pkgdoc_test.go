// Package pkgdoc holds only a test: every package in the module has exactly
// one package doc comment, starting "Package <name>" (or "Command <name>"),
// and every exported name has a doc comment (STYLE.md R1).
package pkgdoc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDocComments(t *testing.T) {
	root := filepath.Join("..", "..")
	dirs := map[string][]string{}
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if len(dirs) < 5 {
		t.Fatalf("found only %d package directories under %s", len(dirs), root)
	}
	fset := token.NewFileSet()
	for dir, files := range dirs {
		var docs []string
		for _, f := range files {
			file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil {
				docs = append(docs, f)
				text := file.Doc.Text()
				if !strings.HasPrefix(text, "Package "+file.Name.Name+" ") && !strings.HasPrefix(text, "Command ") {
					t.Errorf("%s: package doc starts %q, want \"Package %s ...\"", f, firstLine(text), file.Name.Name)
				}
			}
			checkExported(t, fset, file)
		}
		if len(docs) != 1 {
			t.Errorf("%s: %d files carry a package doc (%v), want exactly 1", dir, len(docs), docs)
		}
	}
}

func checkExported(t *testing.T, fset *token.FileSet, file *ast.File) {
	t.Helper()
	for _, decl := range file.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Name.IsExported() && d.Doc == nil && receiverExported(d) && !isInterfaceMethod(d.Name.Name) {
				t.Errorf("%s: exported %s has no doc comment", fset.Position(d.Pos()), d.Name.Name)
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() && d.Doc == nil && s.Doc == nil {
						t.Errorf("%s: exported type %s has no doc comment", fset.Position(s.Pos()), s.Name.Name)
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() && d.Doc == nil && s.Doc == nil && s.Comment == nil {
							t.Errorf("%s: exported %s has no doc comment", fset.Position(n.Pos()), n.Name)
						}
					}
				}
			}
		}
	}
}

// isInterfaceMethod reports whether name implements a well-known interface
// whose contract is documented there (Error, ServeHTTP, String, ...).
func isInterfaceMethod(name string) bool {
	switch name {
	case "Error", "Unwrap", "String", "ServeHTTP", "Read", "Write", "Close", "Header", "WriteHeader",
		"Flush", "Hijack", "Accept", "Addr", "Network", "MarshalText", "UnmarshalText", "Timeout", "Temporary":
		return true
	}
	return false
}

func receiverExported(d *ast.FuncDecl) bool {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return true
	}
	typ := d.Recv.List[0].Type
	if st, ok := typ.(*ast.StarExpr); ok {
		typ = st.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
