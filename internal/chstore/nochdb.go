//go:build !chdb

package chstore

import "errors"

func openChDB(string) (backend, error) {
	return nil, errors.New("this pulse binary was built without chdb support (build with -tags chdb)")
}
