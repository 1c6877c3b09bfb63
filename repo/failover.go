package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Several hosts in one DSN: "user@tcp(db1:3306,db2:3306)/reservation". The pool keeps
// connections only to the one that is writable, the primary, and follows a failover by
// itself: a connection that met a read-only refusal, or that was opened before the primary
// changed, is dropped by the pool, and new ones go to whichever host is writable now.

// Read-only refusals: the server is a replica, or was demoted.
const (
	errReadOnly      = 1290 // ER_OPTION_PREVENTS_STATEMENT: --read-only (or --super-read-only)
	errReadOnlyTrans = 1836 // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, also MySQL's super_read_only
	// A Group Replication member leaving its group (STOP GROUP_REPLICATION, expelled) refuses
	// new transactions (3799, "The Group Replication plugin is stopping"), and, once out of
	// it, any under group_replication_consistency BEFORE (3796, "cannot be used on the current
	// member state"); a commit under way then fails its before_commit hook (3100, "Error on
	// observer while running replication hook 'before_commit'") and is rolled back. Nothing
	// was written: as with read_only, the next try goes to the group's primary. (Seen in
	// chaos.TestGroupReplicationSinglePrimary, when the primary leaves.)
	errGRStopping  = 3799
	errGRNotOnline = 3796
	errGRHook      = 3100
)

// failoverCheckInterval is how often the primary is asked whether it is still writable, so
// that a primary demoted while connections idle is left within about a second.
const failoverCheckInterval = 500 * time.Millisecond

// errNoPrimary says no host of the DSN was reachable and writable.
var errNoPrimary = errors.New("no writable mysql host")

// splitHosts takes the address list out of a DSN: for "u@tcp(a:1,b:2)/db" it returns
// "u@tcp(a:1)/db" and [a:1 b:2]. A DSN with one address comes back as it is, with no list.
// It finds the address the way the driver does: inside the parentheses between the last "@"
// before the last "/" and that "/".
func splitHosts(dsn string) (string, []string, error) {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		return dsn, nil, nil
	}
	at := strings.LastIndex(dsn[:slash], "@")
	netPart := dsn[at+1 : slash]
	open := strings.Index(netPart, "(")
	if open < 0 || !strings.HasSuffix(netPart, ")") {
		return dsn, nil, nil
	}
	list := netPart[open+1 : len(netPart)-1]
	if !strings.Contains(list, ",") {
		return dsn, nil, nil
	}
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return "", nil, fmt.Errorf("parse mysql dsn: empty address in %q", list)
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "3306")
		}
		hosts = append(hosts, h)
	}
	single := dsn[:at+1] + netPart[:open+1] + hosts[0] + ")" + dsn[slash:]
	return single, hosts, nil
}

// failover is a driver.Connector over several hosts that connects only to a writable one.
type failover struct {
	hosts      []string
	connectors []driver.Connector
	drv        driver.Driver
	log        *slog.Logger

	mu      sync.Mutex
	primary int // index into hosts of the last writable host found; -1 when none is known
	// gen grows whenever the primary is found changed or no longer writable: a connection
	// made under an older generation is no longer valid, and the pool drops it.
	gen atomic.Uint64

	stop context.CancelFunc
	wg   sync.WaitGroup // the watcher and any probe still dialing
}

var _ driver.Connector = (*failover)(nil)
var _ io.Closer = (*failover)(nil)

// newFailover returns a connector over cfg's server at each of hosts, watching the primary
// until Close, which sql.DB.Close calls.
func newFailover(cfg *mysql.Config, hosts []string) (*failover, error) {
	f := &failover{hosts: hosts, primary: 0, log: slog.Default()}
	for _, h := range hosts {
		c := cfg.Clone()
		c.Addr = h
		conn, err := mysql.NewConnector(c)
		if err != nil {
			return nil, fmt.Errorf("mysql connector for %s: %w", h, err)
		}
		f.connectors = append(f.connectors, conn)
	}
	f.drv = f.connectors[0].Driver()
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	f.wg.Go(func() { f.watch(ctx) })
	return f, nil
}

// Driver implements driver.Connector.
func (f *failover) Driver() driver.Driver { return f.drv }

// Close stops the watcher and waits for every goroutine of the connector.
func (f *failover) Close() error {
	f.stop()
	f.wg.Wait()
	return nil
}

// Connect returns a connection to the writable host: the last one known first, then
// whichever of the others answers writable first.
func (f *failover) Connect(ctx context.Context) (driver.Conn, error) {
	f.mu.Lock()
	p := f.primary
	f.mu.Unlock()
	gen := f.gen.Load()
	var errs []error
	if p >= 0 {
		c, err := f.dialWritable(ctx, p)
		if err == nil {
			return f.wrap(c, p, gen), nil
		}
		var me *mysql.MySQLError
		if errors.As(err, &me) && !isReadOnly(err) {
			// The primary answered and refused the session (a bad parameter, access
			// denied, too many connections): no reason to look elsewhere.
			return nil, err
		}
		errs = append(errs, err)
		f.demote(p, err)
	}
	type found struct {
		i   int
		c   driver.Conn
		err error
	}
	results := make(chan found, len(f.hosts)) // never blocks a probe
	var claimed atomic.Bool                   // the first writable answer wins; later ones close
	n := 0
	for i := range f.hosts {
		if i == p {
			continue
		}
		n++
		f.wg.Go(func() {
			c, err := f.dialWritable(ctx, i)
			if err == nil && !claimed.CompareAndSwap(false, true) {
				c.Close()
				return
			}
			results <- found{i, c, err}
		})
	}
	for ; n > 0; n-- {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		return f.wrap(r.c, r.i, f.promote(r.i)), nil
	}
	return nil, fmt.Errorf("%w among %s: %w", errNoPrimary, strings.Join(f.hosts, ", "), errors.Join(errs...))
}

// dialWritable connects to host i and keeps the connection only if the server is writable.
func (f *failover) dialWritable(ctx context.Context, i int) (driver.Conn, error) {
	c, err := f.connectors[i].Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.hosts[i], err)
	}
	if err := writable(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", f.hosts[i], err)
	}
	return c, nil
}

// warnIfPrivileged logs a warning when the session's user may write to a read-only
// server (SUPER, or READ_ONLY ADMIN on MariaDB): the server then does not refuse the writes
// of a demoted primary itself, and only the check every failoverCheckInterval stops them.
func warnIfPrivileged(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, log *slog.Logger) {
	rows, err := q.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var grant string
		if rows.Scan(&grant) != nil {
			return
		}
		g := strings.ToUpper(grant)
		if strings.Contains(g, " ON *.*") && (strings.Contains(g, "ALL PRIVILEGES") || strings.Contains(g, "SUPER") || strings.Contains(g, "READ_ONLY ADMIN")) {
			log.WarnContext(ctx, "the mysql user may write to a read-only server: after a failover, writes to the demoted primary are stopped only by the service's own check (every 500ms); use a user without SUPER and READ_ONLY ADMIN", "grant", grant)
			return
		}
	}
}

// errServerReadOnly says a host answered but is read-only: a replica.
var errServerReadOnly = errors.New("server is read-only")

// writable asks the server on c whether it takes writes: read_only off, and on MySQL
// super_read_only off too. MariaDB has no super_read_only, and lets SUPER (root) write to a
// read_only server, which is why the service asks rather than relying on a refusal.
func writable(ctx context.Context, c driver.Conn) error {
	q, ok := c.(driver.QueryerContext)
	if !ok {
		return errors.New("mysql connection cannot query")
	}
	rows, err := q.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'super_read_only')", nil)
	if err != nil {
		return fmt.Errorf("ask whether the server is read-only: %w", err)
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	seen := 0
	for {
		err := rows.Next(vals)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("ask whether the server is read-only: %w", err)
		}
		seen++
		name, value := asString(vals[0]), asString(vals[1])
		if !strings.EqualFold(value, "OFF") && value != "0" {
			return fmt.Errorf("%w (%s=%s)", errServerReadOnly, name, value)
		}
	}
	if seen == 0 {
		return errors.New("ask whether the server is read-only: read_only not reported")
	}
	return nil
}

func asString(v driver.Value) string {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case string:
		return v
	}
	return fmt.Sprint(v)
}

// promote makes host i the known primary and returns the generation connections to it
// belong to; a change of primary starts a new generation.
func (f *failover) promote(i int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.primary != i {
		f.log.Warn("mysql primary found", "host", f.hosts[i])
		f.primary = i
		f.gen.Add(1)
	}
	return f.gen.Load()
}

// demote forgets host i as the primary, if it still is, and ends the generation of its
// connections: the pool drops them as they come back.
func (f *failover) demote(i int, why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.primary != i {
		return
	}
	f.log.Warn("mysql primary lost: looking for a writable host", "host", f.hosts[i], "err", why)
	f.primary = -1
	f.gen.Add(1)
}

// watch asks the primary every failoverCheckInterval whether it still takes writes, on a
// connection of its own, and looks for a writable host while none is known, until ctx ends.
func (f *failover) watch(ctx context.Context) {
	var probe driver.Conn
	probeHost := -1
	defer func() {
		if probe != nil {
			probe.Close()
		}
	}()
	tick := time.NewTicker(failoverCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f.mu.Lock()
		p := f.primary
		f.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 2*failoverCheckInterval)
		if p < 0 {
			// No primary known: find one, so writes resume without waiting for a caller.
			if c, err := f.Connect(cctx); err == nil {
				c.Close()
			}
			cancel()
			continue
		}
		if probe != nil && probeHost != p {
			probe.Close()
			probe = nil
		}
		var err error
		if probe == nil {
			probe, err = f.connectors[p].Connect(cctx)
			if err != nil {
				probe = nil
			}
			probeHost = p
		}
		if err == nil {
			err = writable(cctx, probe)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if probe != nil {
				probe.Close()
				probe = nil
			}
			f.demote(p, err)
		}
	}
}

// wrap gives c to the pool as a connection of generation gen to host i.
func (f *failover) wrap(c driver.Conn, i int, gen uint64) driver.Conn {
	return &failoverConn{Conn: c, f: f, host: i, gen: gen}
}

// failoverConn is a connection to the primary that turns invalid once it meets a read-only
// refusal or the primary changes, so that the pool drops it instead of reusing it. Every
// interface of the driver's connection that the store relies on is passed through.
type failoverConn struct {
	driver.Conn
	f    *failover
	host int
	gen  uint64
	bad  atomic.Bool
}

var (
	_ driver.ExecerContext      = (*failoverConn)(nil)
	_ driver.QueryerContext     = (*failoverConn)(nil)
	_ driver.ConnBeginTx        = (*failoverConn)(nil)
	_ driver.ConnPrepareContext = (*failoverConn)(nil)
	_ driver.Pinger             = (*failoverConn)(nil)
	_ driver.NamedValueChecker  = (*failoverConn)(nil)
	_ driver.SessionResetter    = (*failoverConn)(nil)
	_ driver.Validator          = (*failoverConn)(nil)
)

// saw looks at what the server answered: a read-only refusal means this host is no
// primary, whatever it was when the connection was made.
func (c *failoverConn) saw(err error) error {
	if isReadOnly(err) {
		c.bad.Store(true)
		c.f.demote(c.host, err)
	}
	return err
}

func (c *failoverConn) current() bool {
	return !c.bad.Load() && c.gen == c.f.gen.Load()
}

// isReadOnly says the host refused the statement as one that takes no writes now: a
// read-only server, or a Group Replication member that is leaving or has left its group.
func isReadOnly(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case errReadOnly, errReadOnlyTrans, errGRStopping, errGRNotOnline, errGRHook:
		return true
	}
	return false
}

func (c *failoverConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	r, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	return r, c.saw(err)
}

func (c *failoverConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	r, err := c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	return r, c.saw(err)
}

func (c *failoverConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if !c.current() {
		return nil, driver.ErrBadConn // nothing sent yet: the pool tries another connection
	}
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, c.saw(err)
	}
	return &failoverTx{tx: tx, c: c}, nil
}

func (c *failoverConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	return s, c.saw(err)
}

func (c *failoverConn) Ping(ctx context.Context) error {
	return c.saw(c.Conn.(driver.Pinger).Ping(ctx))
}

func (c *failoverConn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// ResetSession is called before the pool hands the connection out again.
func (c *failoverConn) ResetSession(ctx context.Context) error {
	if !c.current() {
		return driver.ErrBadConn
	}
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

// IsValid is asked when the connection comes back to the pool.
func (c *failoverConn) IsValid() bool {
	return c.current() && c.Conn.(driver.Validator).IsValid()
}

// failoverTx watches commit and rollback for a read-only refusal.
type failoverTx struct {
	tx driver.Tx
	c  *failoverConn
}

func (t *failoverTx) Commit() error   { return t.c.saw(t.tx.Commit()) }
func (t *failoverTx) Rollback() error { return t.tx.Rollback() }
