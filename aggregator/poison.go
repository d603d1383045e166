package aggregator

import (
	"context"
	"errors"

	"github.com/wedsync/pulse/internal/chstore"
)

// refusedRows are the ClickHouse error codes that mean the server refuses
// the rows of an insert: the same rows would be refused again, however
// often they were sent. Every other failure (a network error, a timeout, a
// cancelled context, TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED, a missing table
// or column while a migration runs) is retryable: it says nothing about the
// rows, and dead-lettering them for it would move good events aside.
var refusedRows = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	26:  "CANNOT_PARSE_QUOTED_STRING",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	131: "TOO_LARGE_STRING_SIZE",
	153: "ILLEGAL_DIVISION",
	190: "SIZES_OF_ARRAYS_DOESNT_MATCH",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	376: "CANNOT_PARSE_UUID",
	395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
	407: "DECIMAL_OVERFLOW",
	469: "VIOLATED_CONSTRAINT",
}

// permanent reports whether err, an insert's failure, is the server
// refusing the rows (see refusedRows) rather than a failure worth retrying.
// A cancelled or timed-out context is never permanent.
func permanent(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	code, ok := chstore.ErrorCode(err)
	if !ok {
		return false
	}
	_, refused := refusedRows[code]
	return refused
}

// isolate handles b after the server refused its rows with err: a batch
// of one message is dead-lettered with err as the reason; a larger one is
// split in two halves by stream sequence, each committed on its own (and
// split again if refused). It reports false if ctx ended before every
// message was acked or dead-lettered.
func (a *Aggregator) isolate(ctx context.Context, b *batch, err error) bool {
	seqs := b.sequences()
	if len(seqs) == 1 {
		reason := "clickhouse refused the rows: " + err.Error()
		moved := false
		for _, m := range b.msgs { // the message, and copies redelivered meanwhile
			moved = a.deadLetter(m, reason) || moved
		}
		if moved {
			a.stats.Refused.Add(1)
		}
		return true
	}
	a.log.Warn().Err(err).Int("messages", len(seqs)).Msg("clickhouse refused a batch's rows; splitting it to find the messages it refuses")
	half := len(seqs) / 2
	return a.commit(ctx, b.subset(seqs[:half])) && a.commit(ctx, b.subset(seqs[half:]))
}
