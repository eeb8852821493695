package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// DropReasons and NoteReasons list every reason constant of reasons.go,
// once, each a valid reason: a reason added without its entry would show
// on /metrics only from its first count.
func TestReasonLists(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "reasons.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var drops, notes []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for i, n := range s.(*ast.ValueSpec).Names {
				v, _ := strconv.Unquote(s.(*ast.ValueSpec).Values[i].(*ast.BasicLit).Value)
				switch {
				case strings.HasPrefix(n.Name, "Drop"):
					drops = append(drops, v)
				case strings.HasPrefix(n.Name, "Note"):
					notes = append(notes, v)
				}
			}
		}
	}
	for _, c := range []struct {
		name        string
		consts, got []string
	}{{"DropReasons", drops, DropReasons}, {"NoteReasons", notes, NoteReasons}} {
		if len(c.consts) == 0 || !slices.Equal(slices.Sorted(slices.Values(c.consts)), slices.Sorted(slices.Values(c.got))) {
			t.Errorf("%s = %v, the constants are %v", c.name, c.got, c.consts)
		}
		for _, r := range c.got {
			if !ValidReason(r) {
				t.Errorf("%s: %q is not a valid reason", c.name, r)
			}
		}
	}
}
