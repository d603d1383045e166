package chstore

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// appendTSV renders the rows held by cols in ClickHouse's TabSeparated
// format. DateTime values are written as Unix seconds, which ClickHouse
// reads independent of its time zone.
//
// Callers check that times lie in the DateTime range (checkDateTimes).
func appendTSV(dst []byte, cols []Column) ([]byte, error) {
	n := -1
	for _, c := range cols {
		l, err := columnLen(c.Values)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		if n >= 0 && l != n {
			return nil, fmt.Errorf("column %s has %d rows; want %d", c.Name, l, n)
		}
		n = l
	}
	for row := 0; row < n; row++ {
		for i, c := range cols {
			if i > 0 {
				dst = append(dst, '\t')
			}
			switch v := c.Values.(type) {
			case []time.Time:
				dst = appendUnix(dst, v[row].Unix())
			case []string:
				dst = appendEscaped(dst, v[row])
			case []uint8:
				dst = strconv.AppendUint(dst, uint64(v[row]), 10)
			case []uint16:
				dst = strconv.AppendUint(dst, uint64(v[row]), 10)
			case []uint32:
				dst = strconv.AppendUint(dst, uint64(v[row]), 10)
			case []uint64:
				dst = strconv.AppendUint(dst, v[row], 10)
			case []int64:
				dst = strconv.AppendInt(dst, v[row], 10)
			case []float64:
				f := v[row]
				switch {
				case math.IsNaN(f):
					dst = append(dst, "nan"...)
				case math.IsInf(f, 1):
					dst = append(dst, "inf"...)
				case math.IsInf(f, -1):
					dst = append(dst, "-inf"...)
				case f == math.Trunc(f) && math.Abs(f) < 1<<53 && !(f == 0 && math.Signbit(f)):
					// A whole number (bytes, counts) as plain digits, which
					// ClickHouse reads exactly; in exponent form ("9.7793294336e+10")
					// its fast float reader can land a unit in the last place off.
					dst = strconv.AppendInt(dst, int64(f), 10)
				default:
					dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
				}
			case []uuid.UUID:
				var buf [36]byte
				u := v[row]
				hexEncode(buf[:], u)
				dst = append(dst, buf[:]...)
			}
		}
		dst = append(dst, '\n')
	}
	return dst, nil
}

// appendUnix writes Unix seconds as exactly ten digits: ClickHouse reads a
// DateTime given as a number only in that form ("NNNNNNNNNN", leading zeros
// allowed), so 86400 must be written 0000086400.
func appendUnix(dst []byte, sec int64) []byte {
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], sec, 10)
	for i := len(b); i < 10; i++ {
		dst = append(dst, '0')
	}
	return append(dst, b...)
}

func columnLen(v any) (int, error) {
	switch v := v.(type) {
	case []time.Time:
		return len(v), nil
	case []string:
		return len(v), nil
	case []uint8:
		return len(v), nil
	case []uint16:
		return len(v), nil
	case []uint32:
		return len(v), nil
	case []uint64:
		return len(v), nil
	case []int64:
		return len(v), nil
	case []float64:
		return len(v), nil
	case []uuid.UUID:
		return len(v), nil
	default:
		return 0, fmt.Errorf("unsupported column type %T", v)
	}
}

func hexEncode(dst []byte, u uuid.UUID) {
	const hex = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hex[b>>4], hex[b&0xf]
		j += 2
	}
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case 0:
			dst = append(dst, '\\', '0')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// tsvRows is a TabSeparated result held in memory.
type tsvRows struct {
	lines [][]string
	cur   []string
	err   error
}

func parseTSV(out []byte) *tsvRows {
	r := &tsvRows{}
	for len(out) > 0 {
		line := out
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			line, out = out[:i], out[i+1:]
		} else {
			out = nil
		}
		r.lines = append(r.lines, strings.Split(string(line), "\t"))
	}
	return r
}

func (r *tsvRows) Next() bool {
	if len(r.lines) == 0 {
		r.cur = nil
		return false
	}
	r.cur, r.lines = r.lines[0], r.lines[1:]
	return true
}

func (r *tsvRows) Err() error   { return r.err }
func (r *tsvRows) Close() error { return nil }

func (r *tsvRows) Scan(dest ...any) error {
	if r.cur == nil {
		return fmt.Errorf("scan called without a row")
	}
	if len(dest) != len(r.cur) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(r.cur))
	}
	for i, d := range dest {
		if err := scanField(unescape(r.cur[i]), d); err != nil {
			return fmt.Errorf("scan column %d: %w", i, err)
		}
	}
	return nil
}

func scanField(s string, dest any) error {
	var err error
	switch d := dest.(type) {
	case *string:
		*d = s
	case *uint8:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 8)
		*d = uint8(v)
	case *uint16:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 16)
		*d = uint16(v)
	case *uint32:
		var v uint64
		v, err = strconv.ParseUint(s, 10, 32)
		*d = uint32(v)
	case *uint64:
		*d, err = strconv.ParseUint(s, 10, 64)
	case *int64:
		*d, err = strconv.ParseInt(s, 10, 64)
	case *float64:
		*d, err = parseFloat(s)
	case *time.Time:
		*d, err = time.ParseInLocation(time.DateTime, s, time.UTC)
	case *uuid.UUID:
		*d, err = uuid.Parse(s)
	case *[]float64:
		*d, err = parseFloatArray(s)
	default:
		return fmt.Errorf("unsupported destination %T", dest)
	}
	return err
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "nan", "-nan":
		return math.NaN(), nil
	case "inf", "+inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

func parseFloatArray(s string) ([]float64, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if s == "" {
		return []float64{}, nil
	}
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		v, err := parseFloat(p)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
