package clickhouse

import (
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// TestCell covers the native path's formatting of result columns, which a
// test against ClickHouse 18.16 cannot reach (it refuses native queries):
// values must read as the HTTP path's TabSeparated gives them.
func TestCell(t *testing.T) {
	var s proto.ColStr
	s.Append("a\tb")
	var u64 proto.ColUInt64
	u64.Append(18446744073709551615)
	var u32 proto.ColUInt32
	u32.Append(1750000000)
	var u8 proto.ColUInt8
	u8.Append(1)
	var i64 proto.ColInt64
	i64.Append(-5)
	auto := &proto.ColAuto{Data: &s, DataType: proto.ColumnTypeString}
	for _, c := range []struct {
		col  proto.ColResult
		want string
	}{{&s, "a\tb"}, {&u64, "18446744073709551615"}, {&u32, "1750000000"}, {&u8, "1"}, {&i64, "-5"}, {auto, "a\tb"}} {
		if got := cell(c.col, 0); got != c.want {
			t.Errorf("%T: %q, want %q", c.col, got, c.want)
		}
	}
}
