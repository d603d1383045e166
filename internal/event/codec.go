package event

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// The batch encoding is how the ingest edge puts already validated requests
// on the stream: compact, and cheap for the aggregator to decode. A batch
// is the version byte, the event count (uvarint), then per event: timestamp
// in Unix microseconds (varint), service, endpoint, method (uvarint length +
// bytes each), status code (uvarint), response time (8 bytes, IEEE 754 little
// endian), user ID (16 bytes), error message and request ID (length + bytes).
const batchVersion = 1

// ErrMalformedBatch is returned for bytes that are not a well-formed batch.
var ErrMalformedBatch = errors.New("malformed batch encoding")

// AppendBatch appends the encoding of reqs to dst and returns it.
func AppendBatch(dst []byte, reqs []Request) []byte {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(reqs)))
	for i := range reqs {
		q := &reqs[i]
		dst = binary.AppendVarint(dst, q.Timestamp.UnixMicro())
		dst = appendString(dst, q.Service)
		dst = appendString(dst, q.Endpoint)
		dst = appendString(dst, q.Method)
		dst = binary.AppendUvarint(dst, uint64(q.StatusCode))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(q.ResponseTimeMS))
		dst = append(dst, q.UserID[:]...)
		dst = appendString(dst, q.ErrorMessage)
		dst = appendString(dst, q.RequestID)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeBatch decodes a batch written by AppendBatch, appending to dst. It
// never panics on arbitrary input; it returns ErrMalformedBatch instead. The
// decoded requests are not re-validated.
func DecodeBatch(dst []Request, b []byte) ([]Request, error) {
	r := reader{b: b}
	if r.byte() != batchVersion {
		return dst, ErrMalformedBatch
	}
	n := r.uvarint()
	// Every event takes at least 31 bytes; a count beyond that is a lie.
	if r.err || n > uint64(len(r.b))/31 {
		return dst, ErrMalformedBatch
	}
	for range n {
		var q Request
		q.Timestamp = time.UnixMicro(r.varint()).UTC()
		q.Service = r.string()
		q.Endpoint = r.string()
		q.Method = r.string()
		code := r.uvarint()
		q.ResponseTimeMS = math.Float64frombits(r.uint64())
		copy(q.UserID[:], r.bytes(16))
		q.ErrorMessage = r.string()
		q.RequestID = r.string()
		if r.err || code > math.MaxUint16 {
			return dst, ErrMalformedBatch
		}
		q.StatusCode = uint16(code)
		dst = append(dst, q)
	}
	if len(r.b) != 0 {
		return dst, ErrMalformedBatch
	}
	return dst, nil
}

// reader consumes b; after the first failure err is set and every read
// returns a zero value.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.err = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.err = true
		r.b = nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uint64() uint64 { return binary.LittleEndian.Uint64(r.bytes(8)) }

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = true
		r.b = nil
		return ""
	}
	return string(r.bytes(int(n)))
}

// MaxEncodedSize is an upper bound of q's size in the batch encoding.
func MaxEncodedSize(q *Request) int {
	return 10 + 5*binary.MaxVarintLen64 + 3 + 8 + 16 +
		len(q.Service) + len(q.Endpoint) + len(q.Method) + len(q.ErrorMessage) + len(q.RequestID)
}
