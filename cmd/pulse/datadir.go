package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/wedsync/pulse/internal/auth"
)

// What `pulse serve` keeps in its --data-dir besides the embedded NATS
// store and the chDB data.
const (
	lockFile   = "pulse.lock"  // flock held while serving; holds the pid
	tokensFile = "tokens.json" // generated tokens, mode 0600
)

// lockDataDir makes sure one `pulse serve` at a time uses dir, when this
// one keeps state there (embedded NATS or chDB: needed). It holds an
// exclusive flock on <dir>/pulse.lock, with this process's pid in it,
// until release is called or the process ends; when another process holds
// it, the error names that process. Without needed it does nothing.
func lockDataDir(dir string, needed bool) (release func(), err error) {
	if !needed {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			other := "another process"
			if b, _ := io.ReadAll(io.LimitReader(f, 32)); len(b) > 0 {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					other = fmt.Sprintf("another pulse serve (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("data directory %s is in use by %s, which holds %s; stop it or choose another --data-dir", dir, other, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}

// tokenSet is the static-token authenticator, with the generated tokens
// and the file they are kept in when none were configured.
type tokenSet struct {
	*auth.StaticTokens
	generated map[auth.Scope]string
	file      string // absolute path of the tokens file, when generated
}

// parseTokens reads the configured token lists.
func parseTokens(admin, ingest string) (tokenSet, error) {
	ts := tokenSet{StaticTokens: &auth.StaticTokens{}}
	for _, l := range []struct {
		list  string
		scope auth.Scope
	}{{admin, auth.ScopeAdmin}, {ingest, auth.ScopeIngest}} {
		ps, toks, err := auth.ParseTokens(l.list, l.scope)
		if err != nil {
			return ts, fmt.Errorf("%w: %v", errUsage, err)
		}
		for i := range ps {
			ts.Add(toks[i], ps[i])
		}
	}
	return ts, nil
}

// storedTokens is the tokens file.
type storedTokens struct {
	Admin  string `json:"admin"`
	Ingest string `json:"ingest"`
}

// generate gives ts one admin and one ingest token when none were
// configured: those kept in <dataDir>/tokens.json, or new ones written
// there (mode 0600) so that a restart reuses them. It never logs them.
func (ts *tokenSet) generate(dataDir string) error {
	if ts.Len() > 0 {
		return nil
	}
	path, err := filepath.Abs(filepath.Join(dataDir, tokensFile))
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	st, err := readTokens(path)
	if errors.Is(err, os.ErrNotExist) {
		st, err = writeTokens(path)
	}
	if err != nil {
		return err
	}
	ts.generated, ts.file = map[auth.Scope]string{auth.ScopeAdmin: st.Admin, auth.ScopeIngest: st.Ingest}, path
	for scope, tok := range ts.generated {
		ts.Add(tok, auth.Principal{Name: string(scope) + "-generated", Scopes: []auth.Scope{scope}})
	}
	return nil
}

// readTokens reads the tokens file at path; it refuses one that others
// may read, or that does not hold two tokens.
func readTokens(path string) (storedTokens, error) {
	var st storedTokens
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return st, fmt.Errorf("%s is readable by others (mode %04o): chmod 600 it, or delete it to generate new tokens", path, fi.Mode().Perm())
	}
	if err := json.NewDecoder(io.LimitReader(f, 1<<16)).Decode(&st); err != nil || len(st.Admin) < 16 || len(st.Ingest) < 16 {
		return st, fmt.Errorf("%s does not hold an admin and an ingest token; delete it to generate new ones", path)
	}
	return st, nil
}

// writeTokens generates two tokens and stores them at path, mode 0600.
// When another process stored some first, it returns those.
func writeTokens(path string) (storedTokens, error) {
	st := storedTokens{Admin: randomToken(), Ingest: randomToken()}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return st, fmt.Errorf("create data directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*.json") // mode 0600
	if err != nil {
		return st, fmt.Errorf("write tokens file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return st, fmt.Errorf("write tokens file: %w", err)
	}
	// A link, unlike a rename, never replaces tokens another process stored.
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		return readTokens(path)
	} else if err != nil {
		return st, fmt.Errorf("write tokens file: %w", err)
	}
	return st, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "pulse_" + base64.RawURLEncoding.EncodeToString(b)
}

// printWelcome shows the generated tokens, where they are kept, and how to
// send a first event. It goes to stdout, never to the log.
func printWelcome(w io.Writer, baseURL string, ts tokenSet) {
	admin, ingest := ts.generated[auth.ScopeAdmin], ts.generated[auth.ScopeIngest]
	fmt.Fprintf(w, `
Pulse is running at %[1]s. No tokens were configured, so it uses the ones it generated,
kept in %[4]s (mode 0600; reused on restart, delete the file for new ones;
set PULSE_ADMIN_TOKENS and PULSE_INGEST_TOKENS to choose your own):

  admin token:  %[2]s
  ingest token: %[3]s

  export ADMIN_TOKEN=%[2]s INGEST_TOKEN=%[3]s

Send three events:

  curl -sS -X POST %[1]s/api/admin/system/metrics \
    -H "Authorization: Bearer $INGEST_TOKEN" -H 'Content-Type: application/x-ndjson' \
    --data-binary $'{"endpoint":"/api/clients/1","response_time_ms":42,"status_code":200,"service":"web"}\n{"endpoint":"/api/forms","response_time_ms":130.5,"status_code":201,"service":"web","method":"POST"}\n{"endpoint":"/api/payments","response_time_ms":5400,"status_code":502,"service":"api","error_message":"upstream timeout"}'

See them stored:

  curl -sS %[1]s/api/admin/system/stats -H "Authorization: Bearer $ADMIN_TOKEN"

`, baseURL, admin, ingest, ts.file)
}
