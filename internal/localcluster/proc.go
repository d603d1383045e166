package localcluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one server process of the cluster: a command line it can be
// started with again after a kill or a stop, its output appended to one
// log file. Its methods are safe for concurrent use.
type Proc struct {
	Name string
	Log  string // path of the file its stdout and stderr go to

	path string
	args []string
	env  []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	logOff int64 // size of Log when the current run started
}

func newProc(name, logDir string, env []string, path string, args ...string) *Proc {
	return &Proc{Name: name, Log: filepath.Join(logDir, name+".log"), path: path, args: args, env: env}
}

// Start starts the process (again); it does not wait for it to serve.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return fmt.Errorf("start %s: already running", p.Name)
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a ^C to local-cluster reaches us, and we stop
	// the servers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done, p.logOff = cmd, done, st.Size()
	return nil
}

func (p *Proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Pid is the process ID of the running process, 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() { p.Stop(0) }

// Stop sends SIGTERM, waits up to timeout, then SIGKILL to its process
// group; it returns once the process is gone. A zero timeout kills at once.
func (p *Proc) Stop(timeout time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	running := p.running()
	p.mu.Unlock()
	if !running {
		return
	}
	if timeout > 0 {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return
		case <-time.After(timeout):
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	<-done
}

// Exited is closed when the current run of the process ends.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Tail returns the last n bytes of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logged reports whether the current run's log holds substr.
func (p *Proc) logged(substr string) bool {
	p.mu.Lock()
	off := p.logOff
	p.mu.Unlock()
	b, _ := os.ReadFile(p.Log)
	return int64(len(b)) > off && strings.Contains(string(b[off:]), substr)
}

// waitFor polls ready every 100 ms until it returns nil, the process exits
// or timeout passes.
func (p *Proc) waitFor(timeout time.Duration, what string, ready func() error) error {
	deadline := time.Now().Add(timeout)
	exited := p.Exited()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before %s; last log lines:\n%s", p.Name, what, p.Tail(3000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not %s within %s: %v; last log lines:\n%s", p.Name, what, timeout, err, p.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n distinct free loopback TCP ports. They are free when
// asked; the servers bind them a moment later.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// render writes template with each @KEY@ replaced by its value; a
// placeholder left over is an error.
func render(template, out string, values map[string]string) error {
	b, err := os.ReadFile(template)
	if err != nil {
		return err
	}
	var pairs []string
	for k, v := range values {
		pairs = append(pairs, "@"+k+"@", v)
	}
	s := strings.NewReplacer(pairs...).Replace(string(b))
	if left := placeholder.FindString(s); left != "" {
		return fmt.Errorf("render %s: placeholder %s left", template, left)
	}
	return os.WriteFile(out, []byte(s), 0o644)
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)
