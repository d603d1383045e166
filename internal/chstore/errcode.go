package chstore

import (
	"errors"
	"regexp"
	"strconv"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ErrorCode returns the ClickHouse error code err carries, from either
// backend: a server's exception (clickhouse-go's *clickhouse.Exception,
// found through wrapping) or chDB's message, which starts "Code: N.".
// Insert's own refusal of a time outside DateTime's range is the server's
// VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE (321), the code it stands in for. ok is
// false when err holds no code: a network error, a timeout, a cancelled
// context, a client-side error.
func ErrorCode(err error) (code int32, ok bool) {
	if err == nil {
		return 0, false
	}
	if errors.Is(err, errDateTimeRange) {
		return 321, true
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return ex.Code, true
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	if m := chdbCode.FindStringSubmatch(err.Error()); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 32)
		if err == nil {
			return int32(n), true
		}
	}
	return 0, false
}

// chdbCode finds the code in a chDB error (the innermost of a chain): "Code: 395. DB::Exception: ...".
var chdbCode = regexp.MustCompile(`^Code: (\d+)\. `)

// errDateTimeRange is wrapped by Insert's refusal of a time outside the
// range of DateTime.
var errDateTimeRange = errors.New("value out of range of DateTime")
