// Package flaghint adds to a setting's parse error what the setting takes,
// notes on an error which of the flags it names hold an environment
// variable's value (NoteEnv), and finds environment variables that look
// like settings but are none.
//
// The flag package reports a number, duration or boolean it cannot parse
// as only "parse error", and strconv as "invalid syntax"; the commands
// (edgepixel-pop, edgepixel-aggregator, edgepixel-sign, edgepixel-salt) add the form a value must have, so
// a user fixes a flag or an environment variable without reading --help.
// UsageError marks such an error for the exit status (ExitCode).
package flaghint

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/shared/flaghint/nearest"
)

// The words Kind names kinds by; For switches on them.
const (
	wholeNumber = "a whole number"
	number      = "a number"
	trueOrFalse = "true or false"
)

// For returns what a setting named name whose value has v's type takes, or
// "" for types whose own errors say it (strings, lists). A whole-number
// setting named for bytes or memory asks for bytes.
func For(name string, v any) string {
	if _, ok := v.(time.Duration); ok {
		return "want a duration such as 500ms, 30s, 5m or 720h"
	}
	if v == nil {
		return ""
	}
	switch w := Kind(reflect.TypeOf(v).Kind()); w {
	case wholeNumber:
		if strings.Contains(name, "bytes") || strings.Contains(name, "memory") || name == "max-body" {
			return "want a whole number of bytes, e.g. 4194304 for 4 MiB"
		}
		return "want " + w
	case number:
		return "want " + w
	case trueOrFalse:
		return "want true or false (or 1 or 0)"
	}
	return ""
}

// Kind names in words the values a Go kind holds, as a setting or a JSON
// field of that kind takes them: "a whole number", "a number", "true or
// false", "a string", "a list", "an object"; "" for other kinds.
func Kind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return wholeNumber
	case reflect.Float32, reflect.Float64:
		return number
	case reflect.Bool:
		return trueOrFalse
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return ""
}

// Want names in words the values of Go type t (through pointers) a
// setting or a JSON field takes: Kind, with the range of a sized whole
// number ("a whole number from 0 to 255" for a uint8).
func Want(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("%s from 0 to %d", wholeNumber, uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("%s from %d to %d", wholeNumber, int64(-1)<<(t.Bits()-1), int64(math.MaxInt64)>>(64-t.Bits()))
	}
	return Kind(t.Kind())
}

// JSONField says what a JSON field named name must hold, for
// encoding/json's error about it, which names the Go struct and type
// behind the field ("json: cannot unmarshal number 500 into Go struct
// field line.bot_score of type uint8"): "bot_score must be a whole number
// from 0 to 255, not a JSON number 500".
func JSONField(name string, te *json.UnmarshalTypeError) string {
	if want := Want(te.Type); want != "" {
		return fmt.Sprintf("%s must be %s, not a JSON %s", name, want, te.Value)
	}
	return fmt.Sprintf("%s cannot be a JSON %s", name, te.Value)
}

// Flag returns For the flag's name and value ("" for a nil flag or one
// whose value is not a flag.Getter).
func Flag(f *flag.Flag) string {
	if f == nil {
		return ""
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	return For(f.Name, g.Get())
}

// badValue matches the flag package's error for a value its type does not
// parse; booleans have words of their own.
var badValue = regexp.MustCompile(`^invalid (?:value ".*" for flag|boolean value ".*" for) -([a-zA-Z0-9_-]+): parse error$`)

// singleDash matches the flag names in the flag package's errors, which it
// writes with one dash ("-addr") where the commands' help and README write
// two.
var singleDash = regexp.MustCompile(`(^|: |flag |for )-([a-zA-Z0-9_])`)

// Explain rewrites an error from fs.Parse for a user: flags named with two
// dashes, as --help names them; an unknown flag as "unknown flag --NAME",
// with the flag it most likely misspells ("did you mean --addr?"); and a
// value that did not parse with the form the flag takes. The result wraps
// err.
func Explain(fs *flag.FlagSet, err error) error {
	msg := singleDash.ReplaceAllString(err.Error(), "$1--$2")
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + name
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if near := Nearest(strings.TrimLeft(name, "-"), names); near != "" {
			msg += "; did you mean --" + near + "?"
		}
	} else if m := badValue.FindStringSubmatch(err.Error()); m != nil {
		if hint := Flag(fs.Lookup(m[1])); hint != "" {
			msg += ": " + hint
		}
	}
	if msg == err.Error() {
		return err
	}
	return &rewritten{msg, err}
}

// rewritten is an error said otherwise: Error is msg, and it wraps err.
type rewritten struct {
	msg string
	err error
}

func (e *rewritten) Error() string { return e.msg }
func (e *rewritten) Unwrap() error { return e.err }

// SeeHelp is the line a command prints under a usage error in place of
// its whole usage: printed after the error, a usage of dozens of lines
// scrolls the one line that says what is wrong off the screen.
func SeeHelp(cmd string) string { return "(" + cmd + " --help lists every flag)" }

// ExplainParse adds the hint to an error from strconv.ParseBool, a strconv
// number parser or time.ParseDuration (an environment variable read by
// hand), and returns any other error as it is. The result wraps err.
func ExplainParse(err error) error {
	var ne *strconv.NumError
	var hint string
	switch {
	case errors.As(err, &ne) && ne.Func == "ParseBool":
		hint = For("", false)
	case errors.As(err, &ne):
		hint = For("", 0)
	case strings.Contains(err.Error(), "time: "): // time.ParseDuration names no valid form
		hint = For("", time.Duration(0))
	default:
		return err
	}
	return fmt.Errorf("%w: %s", err, hint)
}

// UnknownEnv returns, sorted, a warning for each variable of environ (as
// os.Environ gives it, "NAME=value") whose name has prefix but that known
// does not hold: a misspelt setting would otherwise be ignored without a
// word. Each warning names the known variable nearest to it, when one
// differs by at most two edits.
func UnknownEnv(environ []string, prefix string, known map[string]bool) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, prefix) || known[name] {
			continue
		}
		w := name + " is set but names no setting: ignored"
		if best := Nearest(name, slices.Collect(maps.Keys(known))); best != "" {
			w += "; did you mean " + best + "?"
		}
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

// Nearest returns the one of known nearest to name, when it differs by
// at most two edits (the first in sort order of those as near), else "":
// the setting a misspelt name most likely meant (package nearest, which
// the worker's module uses without this package's imports).
func Nearest(name string, known []string) string { return nearest.Nearest(name, known) }

// EnvValue is a flag holding the value an environment variable gave it,
// the command line not having set it.
type EnvValue struct {
	Flag  string // the flag's name, without dashes
	Var   string // the variable's name
	Value string // the value as given; "" leaves it out of the note
}

// NoteEnv adds to err, an error about the flags' values (a check after
// parsing, or what a flag names, such as a file), which of vals' flags it
// names hold a variable's value: the user set the variable, not the flag,
// and an error naming only the flag sends them looking for a flag never
// given. The note is "(--name is VAR's value)", with the value as given
// when there is one ("(--name is VAR's value, "V")"), several sorted and
// joined by "; ". err comes back as it is when it names none of them;
// else the result wraps it.
func NoteEnv(err error, vals []EnvValue) error {
	msg := err.Error()
	var notes []string
	for _, v := range vals {
		if !namesFlag(msg, v.Flag) {
			continue
		}
		note := "--" + v.Flag + " is " + v.Var + "'s value"
		if v.Value != "" {
			note += fmt.Sprintf(", %q", v.Value)
		}
		notes = append(notes, note)
	}
	if len(notes) == 0 {
		return err
	}
	slices.Sort(notes)
	return fmt.Errorf("%w\n(%s)", err, strings.Join(notes, "; "))
}

// namesFlag reports whether msg names the flag --name: "--name" followed
// by the end or by anything but a letter, digit or '-' (so --max-conns is
// not named by --max-conns-per-addr).
func namesFlag(msg, name string) bool {
	for rest := msg; ; {
		i := strings.Index(rest, "--"+name)
		if i < 0 {
			return false
		}
		rest = rest[i+2+len(name):]
		if rest == "" {
			return true
		}
		if c := rest[0]; !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return true
		}
	}
}

// UsageError marks a command's error as its command line's or its
// environment's (a flag or variable missing, not parsing, out of its
// domain, or a stray argument): exit status 2 (ExitCode), where a failure
// at run time (an API that cannot be reached, a file that cannot be read)
// is 1.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitCode is a command's exit status for err: 0 for none, 2 for a
// UsageError, else 1.
func ExitCode(err error) int {
	var ue UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// Set reports whether fs's command line set the flag name, as opposed to
// leaving it at its default (which may hold an environment variable's
// value). flag.FlagSet.Visit walks only the flags that were set.
func Set(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// PrintDefaults writes fs's flags as fs.PrintDefaults does, each named
// with two dashes, as the README and the errors (Explain) name them.
func PrintDefaults(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	io.WriteString(w, regexp.MustCompile(`(?m)^  -`).ReplaceAllString(b.String(), "  --"))
}
