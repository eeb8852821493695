// Package logging makes the commands' slog loggers from their --log-level
// and --log-format settings (edgepixel-aggregator, edgepixel-pop): one
// set of values, one set of errors, and one JSON form.
//
// The JSON handler writes a time.Duration as its String form ("1m0s"),
// as the text handler does: slog's JSON handler writes it as a whole
// number of nanoseconds (60000000000), which a reader of the logs has to
// convert and which reads differently from the same line in text.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/shared/flaghint/nearest"
)

// Levels and Formats are the names --log-level and --log-format take.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)

// ParseLevel reads a --log-level value: debug, info, warn or error, in
// any case (slog's names; slog's offsets such as "info+2" too). The
// error names the flag, the value and the levels, and the level a near
// miss ("warning", "inf") most likely meant.
func ParseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		msg := fmt.Sprintf("--log-level %q: want debug, info, warn or error", s)
		if near := nearLevel(s); near != "" {
			msg += "; did you mean " + near + "?"
		}
		return 0, fmt.Errorf("%s", msg)
	}
	return lv, nil
}

// nearLevel is the level name s most likely meant: one it begins with
// ("warning", "errors"), or one at most two edits from it ("inf",
// "debgu"); "" for none.
func nearLevel(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, l := range Levels {
		if strings.HasPrefix(s, l) {
			return l
		}
	}
	return nearest.Nearest(s, Levels)
}

// CheckFormat refuses a --log-format value other than text or json.
func CheckFormat(format string) error {
	if slices.Contains(Formats, format) {
		return nil
	}
	return fmt.Errorf("--log-format %q: want text or json", format)
}

// NewHandler is the handler for format ("text" or "json") writing to w
// the records at level and above; the JSON one writes durations as text
// (DurationText).
func NewHandler(w io.Writer, format string, level slog.Leveler) (slog.Handler, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	if format == "json" {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: DurationText}), nil
	}
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), nil
}

// New is the logger for the --log-format and --log-level values given,
// writing to w; the level is checked first.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	h, err := NewHandler(w, format, lv)
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// DurationText, a slog.HandlerOptions.ReplaceAttr, writes a
// time.Duration as its String form ("1m0s", "250ms").
func DurationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
