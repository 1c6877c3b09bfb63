// Command reservationd serves the reservation gRPC API.
//
//	reservationd [flags]          migrate the schema (unless --migrate=false) and serve
//	reservationd migrate [flags]  migrate the schema and exit
//	reservationd --version        print the build: version, VCS revision, Go version
//	reservationd health [flags]   exit 0 if the replica on --grpc-addr is SERVING, 1 if not
//
// Every flag falls back to an environment variable, named in its help.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"reservation"
	"reservation/auth"
	"reservation/buildinfo"
	"reservation/cache"
	"reservation/gateway"
	"reservation/lock"
	"reservation/metrics"
	"reservation/queue"
	"reservation/repo"
	"reservation/service"
	"reservation/telemetry"
)

type config struct {
	grpcAddr        string
	mysqlDSN        string
	redisAddr       string
	redisMode       string
	redisMaster     string
	redisUsername   string
	redisPassFile   string
	redisDB         int
	redisTLS        bool
	redisTLSCA      string
	redisTLSCert    string
	redisTLSKey     string
	redisPrefix     string
	lock            string
	migrate         bool
	maxDuration     time.Duration
	lockWait        time.Duration
	lockTTL         time.Duration
	drain           time.Duration
	logLevel        string
	feedPoll        time.Duration
	feedStall       time.Duration
	feedBuffer      int
	retention       time.Duration
	holdMin         time.Duration
	holdMax         time.Duration
	batchMax        int
	freeMax         time.Duration
	requestTTL      time.Duration
	reapEvery       time.Duration
	httpAddr        string
	tlsCert         string
	tlsKey          string
	tlsClientCA     string
	authFile        string
	maxMsgSize      int
	maxStreams      int
	defaultDeadline time.Duration
	pprof           bool
	groupCommit     int
	precheck        bool
	cacheEntries    int
	oneStatement    string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "reservationd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Println("reservationd", buildinfo.Read())
		return nil
	}
	cmd := "serve"
	if len(args) > 0 && args[0] == "health" {
		return probeHealth(context.Background(), args[1:])
	}
	if len(args) > 0 && args[0] == "migrate" {
		cmd, args = "migrate", args[1:]
	}
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.mysqlDSN == "" {
		return errors.New("--mysql-dsn (RESERVATION_MYSQL_DSN) is required")
	}
	db, err := repo.Open(ctx, cfg.mysqlDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if cmd == "migrate" || cfg.migrate {
		if err := repo.Migrate(ctx, db.DB); err != nil {
			return err
		}
		log.Info("schema up to date")
	}
	if cmd == "migrate" {
		return nil
	}
	// Tracing: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (package telemetry).
	tracing, err := telemetry.FromEnv(ctx, "reservationd", buildinfo.Version(), log)
	if err != nil {
		return err
	}
	defer flushTraces(tracing, log)
	return serve(ctx, cfg, db, log, tracing)
}

// flushTraces exports the spans not yet sent, within a bound, at exit.
func flushTraces(t *telemetry.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("flushing traces", "err", err)
	}
}

func serve(ctx context.Context, cfg config, db *sqlx.DB, log *slog.Logger, tracing *telemetry.Tracing) error {
	locker, closeLocker, err := newLocker(cfg)
	if err != nil {
		return err
	}
	defer closeLocker()
	m := metrics.New()
	feed := queue.New(repo.NewChanges(db), repo.NewLeader(db), queue.Options{
		PollInterval: cfg.feedPoll, StampInterval: cfg.feedPoll, Buffer: cfg.feedBuffer, StallBound: cfg.feedStall,
		Retention: cfg.retention, Logger: log,
	})
	feedCtx, stopFeed := context.WithCancel(tracing.Context(context.WithoutCancel(ctx)))
	feedDone := make(chan struct{})
	go func() { feed.Run(feedCtx); close(feedDone) }()
	defer func() { stopFeed(); <-feedDone }()
	galera, err := repo.Galera(ctx, db)
	if err != nil {
		return err
	}
	perTrip := galera
	switch cfg.oneStatement {
	case "on":
		perTrip = true
	case "off":
		if galera {
			return errors.New("--one-statement-per-trip off on a Galera node: its writes must go one statement per round trip")
		}
		perTrip = false
	}
	if perTrip {
		log.Info("a write sends one statement per round trip", "galera", galera)
	}
	storeOpts := repo.Options{Locker: m.Locker(locker), Logger: log, Committed: feed.Nudge, RequestRetention: cfg.requestTTL, GroupCommit: cfg.groupCommit, Precheck: cfg.precheck, OneStatementPerTrip: perTrip}
	var taken *cache.Cache
	if cfg.cacheEntries > 0 {
		taken = cache.New(cache.Options{MaxEntries: cfg.cacheEntries, Logger: log})
		go taken.Follow(feedCtx, feed)
		storeOpts.Taken = taken
	}
	store := repo.New(db, storeOpts)
	go store.RunReaper(ctx, cfg.reapEvery)
	export(m, store, feed, taken, locker, db)

	opts, err := serverOptions(cfg, m, log)
	if err != nil {
		return err
	}
	opts = append(tracing.ServerOptions(), opts...) // first: the RPC's span covers the other interceptors
	creds, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	api := service.New(store, service.Options{
		MaxDuration: cfg.maxDuration, MinHold: cfg.holdMin, MaxHold: cfg.holdMax, MaxBatch: cfg.batchMax,
		MaxFreeWindow: cfg.freeMax, Feed: feed, Logger: log,
	})
	g := grpc.NewServer(append(opts, grpc.Creds(credentialsFor(creds)))...)
	api.Register(g)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(g, healthSrv)
	reflection.Register(g)
	go watchDatabase(ctx, db, healthSrv, log)
	cacheCurrent := func(bool) {}
	if taken != nil {
		cacheCurrent = taken.SetCurrent
	}
	go watchFeed(ctx, feed, healthSrv, cacheCurrent, log)

	// The HTTP gateway reaches the API through an in-memory connection to a second gRPC server
	// with the same interceptors: it needs no port, and no client certificate of its own.
	inner := grpc.NewServer(opts...)
	api.Register(inner)
	mem := bufconn.Listen(1 << 20)
	go inner.Serve(mem)
	defer inner.Stop()
	conn, err := grpc.NewClient("passthrough:///gateway", append(tracing.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.maxMsgSize)))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	handler, err := gateway.New(ctx, gateway.Options{Conn: conn, Metrics: m.Handler(), Ready: db.PingContext, FeedReady: feed.Stalled, Profile: cfg.pprof})
	if err != nil {
		return err
	}
	web := &http.Server{Handler: tracing.HTTP(handler), TLSConfig: creds, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	lis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.grpcAddr, err)
	}
	httpLis, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("listen on %s: %w", cfg.httpAddr, err)
	}
	log.Info("serving", "grpc_addr", lis.Addr().String(), "http_addr", httpLis.Addr().String(), "lock", cfg.lock,
		"tls", creds != nil, "client_certs", cfg.tlsClientCA != "", "auth", cfg.authFile != "")
	served := make(chan error, 2)
	go func() { served <- g.Serve(lis) }()
	go func() {
		if creds != nil {
			served <- web.ServeTLS(httpLis, "", "")
		} else {
			served <- web.Serve(httpLis)
		}
	}()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("draining in-flight calls", "bound", cfg.drain.String())
	healthSrv.Shutdown()
	// Listen streams never end by themselves: stopping the feed ends them, each with the seq
	// to resume after, before the drain waits for the other calls.
	stopFeed()
	<-feedDone
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.drain)
	defer cancel()
	drained := make(chan struct{})
	go func() { g.GracefulStop(); web.Shutdown(drainCtx); inner.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-drainCtx.Done():
		log.Warn("drain bound reached, stopping")
		g.Stop()
		inner.Stop()
		web.Close()
	}
	log.Info("stopped")
	return nil
}

// serverOptions are what both gRPC servers share: limits, metrics, auth, and the service's
// own codec checks and panic recovery.
func serverOptions(cfg config, m *metrics.Metrics, log *slog.Logger) ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.maxMsgSize),
		grpc.MaxSendMsgSize(cfg.maxMsgSize),
		grpc.MaxConcurrentStreams(uint32(cfg.maxStreams)),
		// Clients may ping every 10s, even without calls; a peer that stops answering pings is
		// dropped, which ends a Listen stream whose client went away without closing it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	opts = append(opts, m.ServerOptions()...)
	if cfg.authFile != "" {
		a, err := auth.Load(cfg.authFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, a.ServerOptions()...)
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(service.DefaultDeadline(cfg.defaultDeadline)))
	return append(opts, service.ServerOptions(log)...), nil
}

// serverTLS is the TLS configuration of both ports, or nil without --tls-cert.
func serverTLS(cfg config) (*tls.Config, error) {
	if cfg.tlsCert == "" && cfg.tlsKey == "" {
		if cfg.tlsClientCA != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if cfg.tlsClientCA != "" {
		pem, err := os.ReadFile(cfg.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", cfg.tlsClientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func credentialsFor(c *tls.Config) credentials.TransportCredentials {
	if c == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(c)
}

// export makes the figures the store, feed, lock and pool keep into metrics.
func export(m *metrics.Metrics, store *repo.Store, feed *queue.Queue, taken *cache.Cache, locker reservation.Locker, db *sqlx.DB) {
	m.Counter("conflicts_total", "Reserve calls refused for overlap.", func() float64 { return float64(store.Stats().Conflicts) })
	m.Counter("tx_retries_total", "Transactions run again after a deadlock or lock wait timeout.", func() float64 { return float64(store.Stats().TxRetries) })
	m.Counter("lock_bypassed_total", "Writes that went ahead on the database guard alone, the lock service being down.", func() float64 { return float64(store.Stats().LockUnavailable) })
	m.Gauge("feed_subscribers", "Open feed subscriptions: Listen streams, and the cache's.", func() float64 { return float64(feed.Stats().Subscribers) })
	m.Gauge("feed_head_seq", "Newest change seq this replica has read.", func() float64 { return float64(feed.Stats().Head) })
	m.Gauge("feed_lag_seconds", "Age of the newest change when this replica read it.", func() float64 { return feed.Stats().Lag.Seconds() })
	m.Gauge("feed_leader", "1 while this replica sequences the change feed.", func() float64 {
		if feed.Stats().Leading {
			return 1
		}
		return 0
	})
	m.Counter("feed_cut_off_total", "Listeners cut off for falling too far behind.", func() float64 { return float64(feed.Stats().CutOff) })
	m.Counter("feed_election_errors_total", "Feed leader elections that failed with an error.", func() float64 { return float64(feed.Stats().ElectionErrors) })
	m.Gauge("feed_unstamped_age_seconds", "How long the oldest change without a seq has waited for one.", func() float64 { return feed.Health().UnstampedAge.Seconds() })
	m.Gauge("feed_behind_changes", "Changes stored that this replica has not read yet.", func() float64 { return float64(feed.Health().Behind) })
	if r, ok := locker.(*lock.Redis); ok {
		m.Counter("lock_lost_total", "Redis locks found expired at release.", func() float64 { return float64(r.Stats().Lost) })
		m.Counter("lock_unavailable_total", "Lock attempts that found Redis unreachable.", func() float64 { return float64(r.Stats().Unavailable) })
	}
	if taken != nil {
		m.Gauge("cache_entries", "Committed reservations the cache holds.", func() float64 { return float64(taken.Stats().Entries) })
		m.Counter("cache_refusals_total", "Reserve items the cache found a reservation in the way of.", func() float64 { return float64(taken.Stats().Refused) })
	}
	m.DB("mysql", db.DB)
}

func newLocker(cfg config) (reservation.Locker, func(), error) {
	switch cfg.lock {
	case "local":
		return lock.NewLocal(cfg.lockWait), func() {}, nil
	case "redis":
		cc, err := redisClientConfig(cfg, os.Getenv)
		if err != nil {
			return nil, nil, err
		}
		client, err := lock.NewClient(cc)
		if err != nil {
			return nil, nil, err
		}
		l := lock.NewRedis(client, lock.RedisOptions{Prefix: cfg.redisPrefix, TTL: cfg.lockTTL, Wait: cfg.lockWait})
		return l, func() { client.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--lock must be redis or local, got %q", cfg.lock)
}

// FeedHealthService is the gRPC health service name that reports the change feed: NOT_SERVING
// while it is stalled (queue.Queue.Stalled). The unnamed service stays about serving writes.
const FeedHealthService = "reservation.v1.Feed"

// watchFeed keeps the feed's health service in step with the feed, and tells the conflict
// cache, which follows the feed, whether its view can be shown to be current: while it
// cannot, the cache proposes no refusal.
func watchFeed(ctx context.Context, feed *queue.Queue, h *health.Server, cacheCurrent func(bool), log *slog.Logger) {
	serving := true
	h.SetServingStatus(FeedHealthService, healthpb.HealthCheckResponse_SERVING)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := feed.Stalled()
		cacheCurrent(err == nil)
		if ok := err == nil; ok != serving && ctx.Err() == nil {
			serving = ok
			status := healthpb.HealthCheckResponse_SERVING
			if !ok {
				status = healthpb.HealthCheckResponse_NOT_SERVING
				log.Error("change feed stalled", "err", err)
			} else {
				log.Info("change feed current again")
			}
			h.SetServingStatus(FeedHealthService, status)
		}
	}
}

// redisPasswordEnv holds the Redis password; there is no flag for it, so that it never shows in
// a process listing.
const redisPasswordEnv = "RESERVATION_REDIS_PASSWORD"

// redisClientConfig turns the --redis-* flags into the locker's client configuration, reading
// the password (from getenv or --redis-password-file) and the TLS files.
func redisClientConfig(cfg config, getenv func(string) string) (lock.ClientConfig, error) {
	cc := lock.ClientConfig{
		Addrs: lock.SplitAddrs(cfg.redisAddr), Mode: cfg.redisMode, MasterName: cfg.redisMaster,
		Username: cfg.redisUsername, DB: cfg.redisDB,
	}
	if len(cc.Addrs) == 0 {
		return cc, fmt.Errorf("--lock redis needs --redis-addr (%s)", envName("redis-addr"))
	}
	cc.Password = getenv(redisPasswordEnv)
	if cfg.redisPassFile != "" {
		if cc.Password != "" {
			return cc, fmt.Errorf("--redis-password-file and %s are both set: give the password once", redisPasswordEnv)
		}
		b, err := os.ReadFile(cfg.redisPassFile)
		if err != nil {
			return cc, fmt.Errorf("--redis-password-file: %w", err)
		}
		cc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if !cfg.redisTLS {
		return cc, nil
	}
	cc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.redisTLSCA != "" {
		pem, err := os.ReadFile(cfg.redisTLSCA)
		if err != nil {
			return cc, fmt.Errorf("--redis-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cc, fmt.Errorf("--redis-tls-ca %s holds no PEM certificate", cfg.redisTLSCA)
		}
		cc.TLS.RootCAs = pool
	}
	if cfg.redisTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.redisTLSCert, cfg.redisTLSKey)
		if err != nil {
			return cc, fmt.Errorf("--redis-tls-cert/--redis-tls-key: %w", err)
		}
		cc.TLS.Certificates = []tls.Certificate{cert}
	}
	return cc, nil
}

// checkRedisFlags refuses combinations of the --redis-* flags that cannot work, naming the flag.
func checkRedisFlags(c config) error {
	addrs := lock.SplitAddrs(c.redisAddr)
	switch c.redisMode {
	case lock.ModeStandalone:
		if len(addrs) > 1 {
			return fmt.Errorf("--redis-addr: %d addresses, but --redis-mode standalone takes one (sentinel and cluster take several)", len(addrs))
		}
	case lock.ModeSentinel:
		if c.redisMaster == "" {
			return errors.New("--redis-mode sentinel needs --redis-master-name")
		}
	case lock.ModeCluster:
		if c.redisDB != 0 {
			return fmt.Errorf("--redis-db %d: a Redis Cluster has only database 0", c.redisDB)
		}
	default:
		return fmt.Errorf("--redis-mode must be standalone, sentinel or cluster, got %q", c.redisMode)
	}
	if c.redisMaster != "" && c.redisMode != lock.ModeSentinel {
		return fmt.Errorf("--redis-master-name is for --redis-mode sentinel, not %s", c.redisMode)
	}
	if c.redisDB < 0 {
		return fmt.Errorf("--redis-db must not be negative, got %d", c.redisDB)
	}
	if !c.redisTLS {
		for name, v := range map[string]string{"redis-tls-ca": c.redisTLSCA, "redis-tls-cert": c.redisTLSCert, "redis-tls-key": c.redisTLSKey} {
			if v != "" {
				return fmt.Errorf("--%s needs --redis-tls", name)
			}
		}
	}
	if (c.redisTLSCert == "") != (c.redisTLSKey == "") {
		return errors.New("--redis-tls-cert and --redis-tls-key go together")
	}
	if c.redisPrefix == "" || strings.ContainsAny(c.redisPrefix, "{}") {
		return fmt.Errorf("--redis-prefix %q: must not be empty nor hold { or } (each lock's key carries its resource as a Cluster hash tag)", c.redisPrefix)
	}
	if c.lockTTL < minLockTTL {
		return fmt.Errorf("--lock-ttl %s: must be at least %s (a held lock is renewed every third of it, and a renewal may take a client timeout)", c.lockTTL, minLockTTL)
	}
	return nil
}

// minLockTTL is the shortest --lock-ttl: a third of it must leave room for a renewal to time out
// (250ms) and be tried again before the lease lapses.
const minLockTTL = 900 * time.Millisecond

// watchDatabase keeps the health service's answer in step with the database.
func watchDatabase(ctx context.Context, db *sqlx.DB, h *health.Server, log *slog.Logger) {
	serving := true
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := db.PingContext(pctx)
		cancel()
		if ok := err == nil; ok != serving && ctx.Err() == nil {
			serving = ok
			status := healthpb.HealthCheckResponse_SERVING
			if !ok {
				status = healthpb.HealthCheckResponse_NOT_SERVING
			}
			log.Warn("database health changed", "serving", ok, "err", err)
			h.SetServingStatus("", status)
		}
	}
}

// parseFlags reads the flags; a flag not on the command line falls back to its environment
// variable, RESERVATION_ and its name in capitals (--lock-wait: RESERVATION_LOCK_WAIT).
func parseFlags(args []string) (config, error) {
	var c config
	fs := flags(&c)
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (" + envName(f.Name) + ")" })
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return c, err
	}
	for name, v := range map[string]int64{
		"max-duration": int64(c.maxDuration), "lock-wait": int64(c.lockWait), "lock-ttl": int64(c.lockTTL),
		"drain": int64(c.drain), "feed-poll": int64(c.feedPoll), "feed-stall-bound": int64(c.feedStall), "feed-buffer": int64(c.feedBuffer),
		"feed-retention": int64(c.retention), "hold-min": int64(c.holdMin), "hold-max": int64(c.holdMax),
		"batch-max": int64(c.batchMax), "free-window-max": int64(c.freeMax),
		"request-retention": int64(c.requestTTL), "reap-interval": int64(c.reapEvery),
		"max-msg-size": int64(c.maxMsgSize), "group-commit": int64(c.groupCommit), "max-streams": int64(c.maxStreams), "default-deadline": int64(c.defaultDeadline),
	} {
		if v <= 0 {
			return c, fmt.Errorf("--%s (%s) must be positive, got %s", name, envName(name), fs.Lookup(name).Value)
		}
	}
	if c.cacheEntries < 0 {
		return c, fmt.Errorf("--cache-entries (%s) must not be negative, got %d", envName("cache-entries"), c.cacheEntries)
	}
	switch c.oneStatement {
	case "auto", "on", "off":
	default:
		return c, fmt.Errorf("--one-statement-per-trip (%s) must be auto, on or off, got %q", envName("one-statement-per-trip"), c.oneStatement)
	}
	if c.holdMin > c.holdMax {
		return c, fmt.Errorf("--hold-min %s is longer than --hold-max %s", c.holdMin, c.holdMax)
	}
	if err := checkRedisFlags(c); err != nil {
		return c, err
	}
	return c, nil
}

// flags declares the flags, each filling a field of c.
func flags(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("reservationd", flag.ContinueOnError)
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.mysqlDSN, "mysql-dsn", "", "MySQL DSN, e.g. root@tcp(127.0.0.1:3306)/reservation")
	fs.StringVar(&c.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis for --lock redis: one address, or comma-separated sentinels (--redis-mode sentinel) or cluster seed nodes (--redis-mode cluster)")
	fs.StringVar(&c.redisMode, "redis-mode", lock.ModeStandalone, "standalone, sentinel or cluster")
	fs.StringVar(&c.redisMaster, "redis-master-name", "", "the master's name the sentinels know (--redis-mode sentinel)")
	fs.StringVar(&c.redisUsername, "redis-username", "", "Redis ACL user (default: the default user); the password comes from "+redisPasswordEnv+" or --redis-password-file")
	fs.StringVar(&c.redisPassFile, "redis-password-file", "", "file holding the Redis password (instead of "+redisPasswordEnv+")")
	fs.IntVar(&c.redisDB, "redis-db", 0, "Redis database index (standalone and sentinel)")
	fs.BoolVar(&c.redisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.StringVar(&c.redisTLSCA, "redis-tls-ca", "", "PEM CA certificates that sign Redis's certificate (default: the system's)")
	fs.StringVar(&c.redisTLSCert, "redis-tls-cert", "", "PEM client certificate for Redis (with --redis-tls-key)")
	fs.StringVar(&c.redisTLSKey, "redis-tls-key", "", "PEM private key of --redis-tls-cert")
	fs.StringVar(&c.redisPrefix, "redis-prefix", "rsv:", "prefix of every Redis key: deployments sharing a Redis need different ones")
	fs.StringVar(&c.lock, "lock", "redis", "writer lock: redis (many replicas) or local (one replica)")
	fs.BoolVar(&c.migrate, "migrate", true, "apply schema migrations at start")
	fs.DurationVar(&c.maxDuration, "max-duration", 366*24*time.Hour, "longest reservation allowed")
	fs.DurationVar(&c.lockWait, "lock-wait", 5*time.Second, "longest wait for a resource's lock before ABORTED")
	fs.DurationVar(&c.lockTTL, "lock-ttl", lock.DefaultTTL, "lease of a Redis lock, renewed every third of it while held: a crashed replica's locks are free at most this long after it died")
	fs.DurationVar(&c.drain, "drain", 20*time.Second, "bound on draining in-flight calls at shutdown")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.feedPoll, "feed-poll", 20*time.Millisecond, "how often the change feed looks for new changes")
	fs.DurationVar(&c.feedStall, "feed-stall-bound", queue.DefaultStallBound, "how long a change may wait for its seq before the feed reports itself stalled (health "+FeedHealthService+", /readyz?feed=1)")
	fs.IntVar(&c.feedBuffer, "feed-buffer", 4096, "changes kept in memory; a listener further behind is cut off with RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.retention, "feed-retention", 7*24*time.Hour, "how long changes are kept for listeners that resume")
	fs.DurationVar(&c.holdMin, "hold-min", time.Second, "shortest hold allowed")
	fs.DurationVar(&c.holdMax, "hold-max", 24*time.Hour, "longest hold allowed")
	fs.IntVar(&c.batchMax, "batch-max", 100, "most reservations in one ReserveBatch")
	fs.DurationVar(&c.freeMax, "free-window-max", 366*24*time.Hour, "longest window a FreeSlots query may ask about")
	fs.DurationVar(&c.requestTTL, "request-retention", 24*time.Hour, "how long the outcome of a call with a request_id is kept for retries")
	fs.DurationVar(&c.reapEvery, "reap-interval", time.Second, "how often lapsed holds are removed")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address: JSON API, /metrics, /healthz, /readyz, /openapi.json")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate: serve gRPC and HTTP over TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "PEM CA certificates: require client certificates they signed")
	fs.StringVar(&c.authFile, "auth-file", "", "JSON token file: turns bearer-token auth on (see package auth)")
	fs.IntVar(&c.maxMsgSize, "max-msg-size", 4<<20, "largest gRPC message received or sent, in bytes")
	fs.IntVar(&c.maxStreams, "max-streams", 1000, "most concurrent calls on one client connection")
	fs.DurationVar(&c.defaultDeadline, "default-deadline", 30*time.Second, "deadline of a unary call that comes without one")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on the HTTP port")
	fs.IntVar(&c.groupCommit, "group-commit", 64, "most concurrent Reserve calls written in one transaction (1: each on its own)")
	fs.BoolVar(&c.precheck, "precheck", false, "refuse a window taken by a committed reservation before taking any lock (helps hot resources, costs a query per Reserve)")
	fs.IntVar(&c.cacheEntries, "cache-entries", 100_000, "committed reservations kept in memory to refuse a taken window without a lock or a query (0: no cache)")
	fs.StringVar(&c.oneStatement, "one-statement-per-trip", "auto", "send a write's statements one round trip each instead of together: auto (on for a Galera node, which needs it), on, or off")
	return fs
}

func envName(flag string) string {
	return "RESERVATION_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
