// Package redistest starts private redis-server processes on free loopback ports for tests:
// single servers with extra options (a password, ACL users, TLS), a Redis Cluster, and a
// Sentinel deployment. Every process is killed when the test ends.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server (or sentinel) process.
type Server struct {
	Addr string
	Port int
	Dir  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options shape a server.
type Options struct {
	// TLS serves TLS only, on the server's port (--tls-port, --port 0); Args must then name
	// the certificate files.
	TLS  bool
	Args []string // more redis-server options, e.g. "--requirepass", "secret"
	// ClusterBus picks a port whose cluster bus port (the port + 10000) is free and valid.
	ClusterBus bool
}

// Start runs a redis-server without persistence on a free loopback port and waits until it
// accepts connections.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis: not run under -short (make check runs only what needs no server; make test runs it)")
	}
	port := FreePort(t)
	for opts.ClusterBus && (port+10000 > 65535 || !portFree(port+10000)) {
		port = FreePort(t)
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: t.TempDir()}
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.Dir}
	if opts.TLS {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port))
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	s.start(t, binary(t, "redis-server"), append(args, opts.Args...))
	return s
}

func (s *Server) start(t testing.TB, bin string, args []string) {
	t.Helper()
	s.log = filepath.Join(s.Dir, "server.log")
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); f.Close(); close(s.done) }()
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || !s.Running() {
			t.Fatalf("%s %q did not listen on %s: %v\n%s", bin, args, s.Addr, err, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Running reports whether the process has not exited.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Log returns the server's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// Client returns a plain client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// FreePort returns a loopback port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (as root, scripts/services.sh installs it for the tests: apt-get install redis-server redis-sentinel): %v", name, err)
	}
	return p
}

// Cluster is a Redis Cluster of masters with replicas.
type Cluster struct {
	Nodes []*Server
}

// NodeTimeout is the cluster-node-timeout (and the sentinels' down-after-milliseconds) of the
// test deployments: Redis's own failure detection, shortened from its 15s (cluster) and 30s
// (sentinel) defaults so that a failover fits in a test. It is a setting of Redis, not of the
// service.
const NodeTimeout = 1000 * time.Millisecond

// StartCluster starts masters*(1+replicas) cluster nodes, joins them with redis-cli --cluster
// create, and waits until every node reports the cluster ok.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis: not run under -short (make check runs only what needs no server; make test runs it)")
	}
	c := &Cluster{}
	var addrs []string
	for range masters * (1 + replicas) {
		s := Start(t, Options{ClusterBus: true, Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(NodeTimeout.Milliseconds(), 10)}})
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(binary(t, "redis-cli"), args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		client := n.Client(t)
		for {
			info, err := client.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s not ok: %v %s", n.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A replica that has not finished its first sync cannot be promoted.
	for _, n := range c.Nodes {
		waitInSync(ctx, t, n.Client(t))
	}
	return c
}

// waitInSync waits until the server is a master or a replica in sync with its master.
func waitInSync(ctx context.Context, t testing.TB, c *redis.Client) {
	t.Helper()
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("replica never in sync: %v %s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addrs returns the addresses of the nodes.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// MasterOf returns the node serving slot as master, asking a live node.
func (c *Cluster) MasterOf(t testing.TB, slot int) *Server {
	t.Helper()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		slots, err := n.Client(t).ClusterSlots(t.Context()).Result()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int(s.Start) <= slot && slot <= int(s.End) && len(s.Nodes) > 0 {
				for _, m := range c.Nodes {
					if m.Addr == s.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	t.Fatalf("no master found for slot %d", slot)
	return nil
}

// Sentinel is a master, a replica and three sentinels watching them as MasterName.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// MasterName is the name the sentinels know the master by.
const MasterName = "mymaster"

// StartSentinel starts a master, its replica and three sentinels (quorum 2), and waits until
// the replica is in sync and every sentinel knows it.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis: not run under -short (make check runs only what needs no server; make test runs it)")
	}
	d := &Sentinel{Master: Start(t, Options{})}
	d.Replica = Start(t, Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(d.Master.Port)}})
	bin := binary(t, "redis-sentinel")
	for range 3 {
		port := FreePort(t)
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: t.TempDir()}
		conf := filepath.Join(s.Dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 1\n",
			port, s.Dir, MasterName, d.Master.Port, MasterName, NodeTimeout.Milliseconds(), MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		s.start(t, bin, []string{conf})
		d.Sentinels = append(d.Sentinels, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitInSync(ctx, t, d.Replica.Client(t))
	for _, s := range d.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		for {
			rs, err := sc.Replicas(ctx, MasterName).Result()
			others, err2 := sc.Sentinels(ctx, MasterName).Result()
			if err == nil && err2 == nil && len(rs) > 0 && len(others) == 2 {
				break
			}
			if ctx.Err() != nil {
				sc.Close()
				t.Fatalf("sentinel %s does not know the replica and the other sentinels: %v %v %v", s.Addr, rs, err, err2)
			}
			time.Sleep(100 * time.Millisecond)
		}
		sc.Close()
	}
	return d
}

// SentinelAddrs returns the sentinels' addresses.
func (d *Sentinel) SentinelAddrs() []string {
	var out []string
	for _, s := range d.Sentinels {
		out = append(out, s.Addr)
	}
	return out
}
