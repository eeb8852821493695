package pop

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// sdkImports parses the //go:wasmimport declarations of the compute-sdk-go
// this module builds its guests with (from the module cache) and returns
// each imported function's parameter types.
func sdkImports(t *testing.T) map[hostKey][]api.ValueType {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/fastly/compute-sdk-go").Output()
	if err != nil {
		t.Fatalf("locating compute-sdk-go: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "internal", "abi", "fastly")
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no SDK sources in %s: %v", dir, err)
	}
	var parsed []*ast.File
	named := map[string]ast.Expr{} // the package's type definitions
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, af)
		for _, d := range af.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, sp := range gd.Specs {
					ts := sp.(*ast.TypeSpec)
					named[ts.Name.Name] = ts.Type
				}
			}
		}
	}
	// A parameter is i64 if its type is, or is defined as, a 64-bit
	// integer; pointers, handles, lengths and smaller integers are i32.
	var is64 func(e ast.Expr) bool
	is64 = func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.SelectorExpr: // prim.U64 and friends
			return e.Sel.Name == "U64" || e.Sel.Name == "I64"
		case *ast.Ident:
			if e.Name == "uint64" || e.Name == "int64" {
				return true
			}
			if def, ok := named[e.Name]; ok {
				return is64(def)
			}
		}
		return false
	}
	imports := map[hostKey][]api.ValueType{}
	for _, af := range parsed {
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Doc == nil {
				continue
			}
			for _, c := range fd.Doc.List {
				f := strings.Fields(c.Text)
				if len(f) != 3 || f[0] != "//go:wasmimport" {
					continue
				}
				var types []api.ValueType
				for _, p := range fd.Type.Params.List {
					ty := api.ValueTypeI32
					if is64(p.Type) {
						ty = api.ValueTypeI64
					}
					for range max(len(p.Names), 1) {
						types = append(types, ty)
					}
				}
				imports[hostKey{f[1], f[2]}] = types
			}
		}
	}
	if len(imports) < 100 {
		t.Fatalf("found only %d imports in %s", len(imports), dir)
	}
	return imports
}

// TestABIModulesCoverSDK checks the module table against what guests
// built with compute-sdk-go import: every module is listed (implemented
// or unsupported, with a reason), and every implemented function has the
// signature the SDK declares (a mismatch would be answered $unsupported
// at link time).
func TestABIModulesCoverSDK(t *testing.T) {
	imports := sdkImports(t)
	listed := map[string]hostModule{}
	for _, m := range abiModules {
		if _, dup := listed[m.name]; dup {
			t.Errorf("module %s listed twice", m.name)
		}
		listed[m.name] = m
		if (len(m.funcs) == 0) != (m.unsupported != "") {
			t.Errorf("module %s: a module has functions or a reason it has none, not both", m.name)
		}
	}
	idx := hostIndex()
	var implemented, unsupported int
	for k, types := range imports {
		if _, ok := listed[k.module]; !ok {
			t.Errorf("the SDK imports module %s, which abiModules does not list", k.module)
			continue
		}
		f, ok := idx[k]
		if !ok {
			unsupported++
			continue
		}
		implemented++
		if !slices.Equal(f.paramTypes(), types) {
			t.Errorf("%s.%s: %d params %v here, %v in the SDK", k.module, k.name, len(f.params), f.paramTypes(), types)
		}
	}
	t.Logf("of the SDK's %d imports: %d implemented, %d answered $unsupported", len(imports), implemented, unsupported)
}

// TestHostFuncDocs checks that every function in the module table is
// implemented in its module's file (or another fastly_*.go file, for the
// shared ones) and has a doc comment of the template in abi.go.
func TestHostFuncDocs(t *testing.T) {
	fset := token.NewFileSet()
	pkgFiles, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*ast.FuncDecl{}
	fileOf := map[string]string{}
	type entry struct{ module, name, impl string }
	var entries []entry
	for _, f := range pkgFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					funcs[d.Name.Name] = d
					fileOf[d.Name.Name] = f
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					vs, ok := sp.(*ast.ValueSpec)
					if !ok || len(vs.Values) != 1 {
						continue
					}
					cl, ok := vs.Values[0].(*ast.CompositeLit)
					if !ok || !isIdent(cl.Type, "hostModule") {
						continue
					}
					var module string
					for _, el := range cl.Elts {
						kv := el.(*ast.KeyValueExpr)
						switch kv.Key.(*ast.Ident).Name {
						case "name":
							module = strings.Trim(kv.Value.(*ast.BasicLit).Value, `"`)
						case "funcs":
							for _, fe := range kv.Value.(*ast.CompositeLit).Elts {
								parts := fe.(*ast.CompositeLit).Elts
								name := strings.Trim(parts[0].(*ast.BasicLit).Value, `"`)
								entries = append(entries, entry{module: module, name: name, impl: implName(parts[2])})
							}
						}
					}
					if want := "fastly_" + strings.TrimSuffix(strings.TrimPrefix(f, "fastly_"), ".go"); module != want {
						t.Errorf("module %s is declared in %s", module, f)
					}
				}
			}
		}
	}
	if len(entries) < 100 {
		t.Fatalf("found only %d table entries", len(entries))
	}
	for _, e := range entries {
		full := e.module + "." + e.name
		fd, ok := funcs[e.impl]
		if !ok {
			t.Errorf("%s: implementation %q not found", full, e.impl)
			continue
		}
		if !strings.HasPrefix(fileOf[e.impl], "fastly_") {
			t.Errorf("%s: %s is in %s, not in a fastly_*.go file", full, e.impl, fileOf[e.impl])
		}
		doc := fd.Doc.Text()
		flat := strings.Join(strings.Fields(doc), " ")
		switch {
		case !strings.HasPrefix(flat, e.impl+" implements "):
			t.Errorf("%s: the doc of %s does not begin %q", full, e.impl, e.impl+" implements")
		case !regexp.MustCompile(`\b`+e.name+`\b`).MatchString(flat) || !strings.Contains(flat, e.module):
			t.Errorf("%s: the doc of %s does not name %s and its module", full, e.impl, e.name)
		case !regexp.MustCompile(`(?m)^Status: `).MatchString(doc):
			t.Errorf("%s: the doc of %s has no Status: paragraph", full, e.impl)
		case !regexp.MustCompile(`(?m)^Differs: `).MatchString(doc):
			t.Errorf("%s: the doc of %s has no Differs: paragraph", full, e.impl)
		}
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// implName is the function a table entry's implementation expression
// names: reqNew, headerNamesGet(reqHeaders), kvWait[*kvInsertPending](...).
func implName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.CallExpr:
		return implName(e.Fun)
	case *ast.IndexExpr:
		return implName(e.X)
	}
	return ""
}
