// Package chaos runs reservationd replicas against private MariaDB and Redis servers and
// breaks things while writers and listeners work: the fault-injection suite of
// RELIABILITY.md. The suite itself is TestChaos; this package holds its parts.
package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MariaDB ping
)

// Proc is a server process the suite can kill, pause and start again, with the same
// arguments, port and data.
type Proc struct {
	Name string
	bin  string
	args []string
	env  []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin with args, appending its output to logPath.
func Start(name, bin, logPath string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, bin: bin, args: args, env: env, log: logPath}
	return p, p.start()
}

func (p *Proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's ^C is the suite's to handle
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Stop sends SIGTERM and waits up to wait for the process to exit, then kills it. It reports
// whether the process exited by itself.
func (p *Proc) Stop(wait time.Duration) bool {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(wait):
		p.Kill()
		return false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid returns the process id of the latest start.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Restart starts the process again after Kill.
func (p *Proc) Restart() error { return p.start() }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// FreePort returns a loopback port nobody listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until something accepts connections at addr.
func WaitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// binary finds a server binary on PATH or in /usr/sbin, where Debian puts mariadbd.
func binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: apt-get install mariadb-server redis-server", name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// StartMariaDB initialises a data directory under dir and serves it on a free port; root
// has an empty password. It returns the server and its address.
func StartMariaDB(ctx context.Context, dir string) (*Proc, string, error) {
	server, err := binary("mariadbd")
	if err != nil {
		return nil, "", err
	}
	install, err := binary("mariadb-install-db")
	if err != nil {
		return nil, "", err
	}
	var asRoot []string
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"} // mariadbd refuses root unless told
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	data := filepath.Join(dir, "data")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}, asRoot...)
	if out, err := exec.CommandContext(ctx, install, args...).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := Start("mariadb", server, filepath.Join(dir, "mariadbd.log"), nil, append([]string{"--no-defaults",
		"--datadir=" + data, "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(os.TempDir(), fmt.Sprintf("chaos-%d.sock", port)),
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"), "--innodb-buffer-pool-size=128M",
		"--max-connections=1000", "--character-set-server=utf8mb4", "--skip-name-resolve"}, asRoot...)...)
	if err != nil {
		return nil, "", err
	}
	db, err := sql.Open("mysql", "root@tcp("+addr+")/")
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	for db.PingContext(ctx) != nil {
		if !p.Running() || ctx.Err() != nil {
			p.Kill()
			return nil, "", fmt.Errorf("private MariaDB did not start:\n%s", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p, addr, nil
}

// StartRedis serves a Redis without persistence on a free port.
func StartRedis(ctx context.Context, dir string) (*Proc, string, error) {
	server, err := binary("redis-server")
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := Start("redis", server, filepath.Join(dir, "redis.log"), nil,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return nil, "", err
	}
	return p, addr, WaitTCP(ctx, addr)
}
