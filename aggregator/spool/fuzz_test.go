package spool

import (
	"bytes"
	"testing"
)

// FuzzScan feeds arbitrary bytes to the record scanner: it must never
// panic, never claim more valid bytes than it was given, and every record
// it returns must re-encode to exactly the bytes it came from.
func FuzzScan(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendRecord(nil, []byte("hello")))
	f.Add(append(appendRecord(appendRecord(nil, []byte("a")), []byte("bc")), 1, 2, 3))
	f.Add([]byte("\xff\xff\xff\xff\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rebuilt []byte
		valid, err := scan(bytes.NewReader(data), int64(len(data)), func(p []byte, end int64) error {
			rebuilt = appendRecord(rebuilt, p)
			if int64(len(rebuilt)) != end {
				t.Fatalf("end %d, rebuilt %d", end, len(rebuilt))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if valid > int64(len(data)) || !bytes.Equal(rebuilt, data[:valid]) {
			t.Fatalf("valid prefix %d does not re-encode", valid)
		}
	})
}
