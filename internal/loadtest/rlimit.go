package loadtest

import (
	"fmt"
	"syscall"
)

// RaiseOpenFileLimit raises this process's soft limit of open files to its
// hard limit and returns the limit now in force.
func RaiseOpenFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		raised := syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return l.Cur, fmt.Errorf("raise the open-file limit to %d: %w", l.Max, err)
		}
		l = raised
	}
	return l.Cur, nil
}

// FileSlack is the open files kept for other uses than user connections
// (the binary, the runtime, standard streams, --json).
const FileSlack = 64
