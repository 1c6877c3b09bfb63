package chaos

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections to a target and can slow them down or cut them: the faults
// of a network between the service and MySQL.
type Proxy struct {
	ln      net.Listener
	target  string
	latency atomic.Int64 // added before each forwarded chunk, in nanoseconds

	// gate, while set, holds what clients send until it is closed (Hold); held counts the
	// bytes waiting at it.
	gate atomic.Pointer[gate]
	held atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]net.Conn // accepted connection -> its upstream connection
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]net.Conn{}}
	go p.serve()
	return p, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk forwarded in either direction by d from now on.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Hold stops forwarding what clients send, while the target's answers still flow back, until
// release is called: a client's requests wait in the network, as over a link that stalls one
// way. Close lets what is held go too.
func (p *Proxy) Hold() (release func()) {
	g := &gate{ch: make(chan struct{})}
	if old := p.gate.Swap(g); old != nil {
		old.open()
	}
	return func() {
		p.gate.CompareAndSwap(g, nil)
		g.open()
	}
}

// gate is a Hold: closed once, by its release or by Close.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// Held is how many bytes clients sent that a Hold keeps from the target now.
func (p *Proxy) Held() int64 { return p.held.Load() }

// Cut closes every open connection and returns how many there were.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c, u := range p.conns {
		c.Close()
		u.Close()
		delete(p.conns, c)
	}
	return n
}

// Upstream reports whether one of the proxy's connections to the target has local address
// addr: how the target sees the client behind the proxy.
func (p *Proxy) Upstream(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.conns {
		if u.LocalAddr().String() == addr {
			return true
		}
	}
	return false
}

// Close stops accepting and cuts what is open.
func (p *Proxy) Close() {
	p.ln.Close()
	if g := p.gate.Swap(nil); g != nil {
		g.open()
	}
	p.Cut()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = u
		p.mu.Unlock()
		go p.pipe(c, u, true)
		go p.pipe(u, c, false)
	}
}

// pipe copies from src to dst, chunk by chunk, until either side closes; fromClient is the
// direction a Hold stops.
func (p *Proxy) pipe(src, dst net.Conn, fromClient bool) {
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if g := p.gate.Load(); fromClient && g != nil {
				p.held.Add(int64(n))
				<-g.ch
				p.held.Add(-int64(n))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut
		}
	}
}
