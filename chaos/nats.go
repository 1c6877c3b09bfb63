package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NATS is a 3-node JetStream cluster of nats-server processes, each of which the suite can
// kill and start again with its data.
type NATS struct {
	Nodes   []*Proc  // n1, n2, n3
	Clients []string // their client addresses, host:port
	monitor []string
}

// StartNATS starts three nodes of bin (nats-server 2.10 or later) with data under dir. The
// nodes do not advertise one another to clients (no_advertise): a client connected through a
// proxy stays on the proxy, so that cutting it cuts the client.
func StartNATS(ctx context.Context, dir, bin string) (*NATS, error) {
	n := &NATS{}
	var routes []string
	type ports struct{ client, cluster, monitor int }
	var ps []ports
	for range 3 {
		var p ports
		for _, q := range []*int{&p.client, &p.cluster, &p.monitor} {
			v, err := FreePort()
			if err != nil {
				return nil, err
			}
			*q = v
		}
		ps = append(ps, p)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p.cluster))
	}
	for i, p := range ps {
		name := fmt.Sprintf("n%d", i+1)
		data := filepath.Join(dir, name)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: chaos, listen: 127.0.0.1:%d, no_advertise: true, routes: [%s] }
`, name, p.client, p.monitor, data, p.cluster, strings.Join(routes, ", "))
		file := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		proc, err := Start("nats-"+name, bin, filepath.Join(dir, name+".log"), nil, "-c", file)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.Nodes = append(n.Nodes, proc)
		n.Clients = append(n.Clients, "127.0.0.1:"+strconv.Itoa(p.client))
		n.monitor = append(n.monitor, "127.0.0.1:"+strconv.Itoa(p.monitor))
	}
	for i := range n.Nodes {
		if err := n.WaitHealthy(ctx, i); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// WaitHealthy waits until node i says JetStream is up and current (/healthz).
func (n *NATS) WaitHealthy(ctx context.Context, i int) error {
	for {
		resp, err := http.Get("http://" + n.monitor[i] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats node %d never healthy: %v\n%s", i+1, err, n.Nodes[i].Log())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// URLs are the nodes' client URLs, comma-separated.
func (n *NATS) URLs() string {
	var out []string
	for _, a := range n.Clients {
		out = append(out, "nats://"+a)
	}
	return strings.Join(out, ",")
}

// Node returns the node named name (n1..n3), or -1.
func (n *NATS) Node(name string) int {
	for i := range n.Nodes {
		if name == fmt.Sprintf("n%d", i+1) {
			return i
		}
	}
	return -1
}

// Close kills every node.
func (n *NATS) Close() {
	for _, p := range n.Nodes {
		p.Kill()
	}
}
