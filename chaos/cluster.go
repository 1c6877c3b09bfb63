package chaos

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "reservation/proto/reservation/v1"
)

// Replica is one reservationd process, reaching MySQL through its own proxy.
type Replica struct {
	*Proc
	Addr   string
	HTTP   string // the HTTP port's address: /metrics
	Proxy  *Proxy // nil with Options.AllHosts
	Client pb.ReservationServiceClient
	conn   *grpc.ClientConn
}

// Cluster is what the suite runs and breaks: MariaDB, Redis, and the replicas.
type Cluster struct {
	MySQL    *Server // nil with Options.MySQLDSN or Options.MySQLAddrs
	Redis    *Server
	Replicas []*Replica
	Admin    *sql.DB // root on the (first) MySQL server, or Options.MySQLDSN; not through any proxy
	Database string
	dropDB   bool // the database is on servers the cluster did not start: drop it at Close
}

// Options shape a cluster.
type Options struct {
	Dir      string // for data, logs and the binary
	Replicas int
	LockTTL  time.Duration // 0: the production default
	Env      []string      // more environment for the replicas, after (so over) the suite's own
	// MySQLDSN, when set, is a server the cluster uses instead of starting a MariaDB, with
	// the database named in it, for servers that cannot CREATE DATABASE (a Vitess keyspace
	// through vtgate). The cluster drops every table in that database first, so the
	// replicas start on an empty schema.
	MySQLDSN string
	// MySQLAddrs, when set, are running servers (root, no password) to use instead of a
	// private MariaDB: replica i reaches MySQLAddrs[i % len]. The nodes of a Galera cluster.
	MySQLAddrs []string
	// AllHosts gives every replica all of MySQLAddrs in one DSN, in that order, directly (no
	// proxy): the service's failover connector then writes to whichever is writable, the
	// primary of a single-primary Group Replication group.
	AllHosts bool
	// AdminParams are added to the Admin connection's DSN (e.g. wsrep_sync_wait=1).
	AdminParams string
	// Database is the service's database (default "chaos"); it must not exist yet.
	Database string
	// Lock is the replicas' --lock: "redis" (default) or "local".
	Lock string
	// ReplicaEnv, when set, gives replica i more environment, after Env.
	ReplicaEnv func(i int) []string
	// BuildTags are go build's -tags for reservationd (a test build: exportbreak).
	BuildTags string
}

// NewCluster builds reservationd and starts everything. Close stops it all.
func NewCluster(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{Database: cmp.Or(opts.Database, "chaos")}
	var err error
	// The replicas' DSN, through their proxy at addr.
	serviceDSN := func(addr string) string {
		return "root@tcp(" + addr + ")/" + c.Database + "?timeout=2s&readTimeout=10s&writeTimeout=10s"
	}
	addrs := opts.MySQLAddrs
	switch {
	case opts.MySQLDSN != "":
		cfg, err := mysql.ParseDSN(opts.MySQLDSN)
		if err != nil {
			return c, fmt.Errorf("MySQLDSN: %w", err)
		}
		if cfg.DBName == "" {
			return c, fmt.Errorf("MySQLDSN %q names no database", opts.MySQLDSN)
		}
		c.Database, addrs = cfg.DBName, []string{cfg.Addr}
		serviceDSN = func(addr string) string {
			cfg := cfg.Clone()
			cfg.Addr = addr
			cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
			return cfg.FormatDSN()
		}
		if c.Admin, err = sql.Open("mysql", opts.MySQLDSN); err != nil {
			return c, err
		}
		if err := dropTables(ctx, c.Admin); err != nil {
			return c, err
		}
	default:
		if len(addrs) == 0 {
			if c.MySQL, err = startIn(ctx, opts.Dir, "mysql", StartMariaDB); err != nil {
				return c, err
			}
			addrs = []string{c.MySQL.Addr}
		}
		adminDSN := "root@tcp(" + addrs[0] + ")/"
		if opts.AdminParams != "" {
			adminDSN += "?" + opts.AdminParams
		}
		if c.Admin, err = sql.Open("mysql", adminDSN); err != nil {
			return c, err
		}
		if _, err := c.Admin.ExecContext(ctx, "CREATE DATABASE "+c.Database); err != nil {
			return c, err
		}
		c.dropDB = c.MySQL == nil
	}
	if c.Redis, err = startIn(ctx, opts.Dir, "redis", StartRedis); err != nil {
		return c, err
	}
	bin := filepath.Join(opts.Dir, "reservationd")
	build := exec.CommandContext(ctx, "go", "build", "-tags", opts.BuildTags, "-o", bin, "reservation/cmd/reservationd")
	if out, err := build.CombinedOutput(); err != nil {
		return c, fmt.Errorf("build reservationd: %w\n%s", err, out)
	}
	for i := range opts.Replicas {
		var proxy *Proxy
		dbAddr := strings.Join(addrs, ",")
		if !opts.AllHosts {
			if proxy, err = NewProxy(addrs[i%len(addrs)]); err != nil {
				return c, err
			}
			dbAddr = proxy.Addr()
		}
		port, err := FreePort()
		if err != nil {
			return c, err
		}
		httpPort, err := FreePort()
		if err != nil {
			return c, err
		}
		r := &Replica{Addr: "127.0.0.1:" + strconv.Itoa(port), HTTP: "127.0.0.1:" + strconv.Itoa(httpPort), Proxy: proxy}
		env := []string{
			"RESERVATION_GRPC_ADDR=" + r.Addr,
			"RESERVATION_HTTP_ADDR=" + r.HTTP,
			"RESERVATION_MYSQL_DSN=" + serviceDSN(dbAddr),
			"RESERVATION_REDIS_ADDR=" + c.Redis.Addr,
			"RESERVATION_LOCK=" + cmp.Or(opts.Lock, "redis"),
			"RESERVATION_DRAIN=2s",
			"RESERVATION_LOG_LEVEL=warn",
		}
		if opts.LockTTL > 0 {
			env = append(env, "RESERVATION_LOCK_TTL="+opts.LockTTL.String())
		}
		env = append(env, opts.Env...)
		if opts.ReplicaEnv != nil {
			env = append(env, opts.ReplicaEnv(i)...)
		}
		name := fmt.Sprintf("replica-%d", i)
		if r.Proc, err = Start(name, bin, filepath.Join(opts.Dir, name+".log"), env); err != nil {
			return c, err
		}
		if r.conn, err = grpc.NewClient(r.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return c, err
		}
		r.Client = pb.NewReservationServiceClient(r.conn)
		c.Replicas = append(c.Replicas, r)
		if err := r.WaitServing(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// dropTables drops every table of db's database.
func dropTables(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SHOW TABLES")
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, name := range tables {
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS `"+name+"`"); err != nil {
			return fmt.Errorf("drop table %s: %w", name, err)
		}
	}
	return nil
}

// Server is a started MariaDB or Redis and its address.
type Server struct {
	*Proc
	Addr string
}

func startIn(ctx context.Context, dir, name string, start func(context.Context, string) (*Proc, string, error)) (*Server, error) {
	p, addr, err := start(ctx, filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return &Server{p, addr}, nil
}

// WaitServing waits until the replica's health service answers SERVING.
func (r *Replica) WaitServing(ctx context.Context) error {
	h := healthpb.NewHealthClient(r.conn)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if !r.Running() {
			return fmt.Errorf("%s exited:\n%s", r.Name, r.Log())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never served: %v\n%s", r.Name, err, r.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Leader returns the replica that holds the change feed's lease now, or -1. The lease's holder
// names its process (host/pid/random).
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	var holder string
	err := c.Admin.QueryRowContext(ctx, "SELECT holder FROM `"+c.Database+"`.reservation_leases WHERE name = 'feed' AND expires_at > UTC_TIMESTAMP(6)").Scan(&holder)
	if err == sql.ErrNoRows {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	for i, r := range c.Replicas {
		if strings.Contains(holder, fmt.Sprintf("/%d/", r.Pid())) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("the feed lease's holder %q is no replica", holder)
}

// KillConnections kills every MySQL connection of the service's database and returns how many.
func (c *Cluster) KillConnections(ctx context.Context) (int, error) {
	rows, err := c.Admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?", c.Database)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	n := 0
	for _, id := range ids {
		if _, err := c.Admin.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10)); err == nil {
			n++ // a connection that ended meanwhile is not an error
		}
	}
	return n, nil
}

// Close stops every process and proxy.
func (c *Cluster) Close() {
	for _, r := range c.Replicas {
		r.conn.Close()
		r.Kill()
		if r.Proxy != nil {
			r.Proxy.Close()
		}
	}
	if c.Admin != nil {
		if c.dropDB {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c.Admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+c.Database)
			cancel()
		}
		c.Admin.Close()
	}
	if c.Redis != nil {
		c.Redis.Kill()
	}
	if c.MySQL != nil {
		c.MySQL.Kill()
	}
}
