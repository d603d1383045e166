package alerts

import (
	"errors"
	"fmt"
	"io"

	"github.com/wedsync/pulse/alerts/rules"
)

// Check validates the rules file at path for `pulse rules check FILE`. A
// valid file gets one summary line on w and a nil error. An invalid one
// gets one line per problem on w, "path:line:column: field: message", and
// an error saying how many there were: the command exits non-zero.
func Check(path string, w io.Writer) error {
	set, err := rules.Load(path)
	var errs *rules.Errors
	switch {
	case errors.As(err, &errs):
		fmt.Fprintln(w, errs.Error())
		n := len(errs.List)
		if n == 1 {
			return fmt.Errorf("%s: 1 problem", path)
		}
		return fmt.Errorf("%s: %d problems", path, n)
	case err != nil:
		return err
	}
	_, err = fmt.Fprintf(w, "%s: ok: %d instant, %d window and %d scaling rules\n", path, len(set.Instant), len(set.Window), len(set.Scaling))
	return err
}
