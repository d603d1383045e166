package chstore

import (
	"errors"
	"strings"
)

// redact removes secret from err's text, so that a driver error that quotes
// its DSN or credentials can be returned and logged safely.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "****"))
}
