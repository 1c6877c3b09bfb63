package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"reservation"
	"reservation/cache"
	"reservation/jetstream"
	"reservation/lock"
	"reservation/queue"
	"reservation/readindex"
	"reservation/repo"
	"reservation/server"
	"reservation/service"
)

// Config is everything reservationd is told: the packages' own Options, and the few settings
// that only the command has (where the database and Redis are, files to read).
type Config struct {
	MySQLDSN string
	Migrate  bool
	LogLevel string
	// Lock is the writer lock: "redis" (many replicas) or "local" (one replica).
	Lock     string
	LockWait time.Duration
	Redis    RedisConfig
	// RedisLock carries the prefix and lease of --lock redis; its Wait is LockWait.
	RedisLock lock.RedisOptions

	// Server is the replica; its TLS and Auth come from the files below.
	Server      server.Options
	TLSCert     string
	TLSKey      string
	TLSClientCA string
	AuthFile    string
	// OneStatementPerTrip is "auto" (on for a Galera node, which needs it), "on" or "off":
	// whether a write sends its statements one round trip each (repo.Options).
	OneStatementPerTrip string
	// Catalogue is "open" (a Reserve of an unknown resource creates it) or "strict" (it is
	// NOT_FOUND): repo.Options.StrictCatalogue.
	Catalogue string
	// NATS is the export of the change feed to NATS JetStream: off while URLs is empty.
	NATS NATSConfig
}

// NATSConfig is where the change feed is exported (package jetstream) and how to reach it:
// what jetstream.Options are made from.
type NATSConfig struct {
	URLs, Stream, SubjectPrefix             string
	Replicas                                int
	CredsFile, NKeyFile, User, PasswordFile string
	TLSCA, TLSCert, TLSKey                  string
}

// RedisConfig is where Redis is and how to reach it: what lock.ClientConfig is made from.
type RedisConfig struct {
	Addr, Mode, MasterName, Username, PasswordFile string
	DB                                             int
	TLS                                            bool
	TLSCA, TLSCert, TLSKey                         string
}

// DefaultConfig is the configuration with no flag and no environment variable set: each
// value is the package's own default.
func DefaultConfig() Config {
	return Config{
		Migrate:             true,
		LogLevel:            "info",
		OneStatementPerTrip: "auto",
		Catalogue:           "open",
		Lock:                "redis",
		LockWait:            lock.DefaultWait,
		Redis:               RedisConfig{Addr: "127.0.0.1:6379", Mode: lock.ModeStandalone},
		RedisLock: lock.RedisOptions{
			Prefix: "rsv:",
			TTL:    lock.DefaultTTL,
		},
		Server: server.Options{
			GRPCAddr: server.DefaultGRPCAddr, HTTPAddr: server.DefaultHTTPAddr,
			Drain: server.DefaultDrain, ReapInterval: repo.DefaultReapInterval,
			MaxMsgSize: server.DefaultMaxMsgSize, MaxStreams: server.DefaultMaxStreams,
			DefaultDeadline: server.DefaultDefaultDeadline,
			Feed: queue.Options{
				PollInterval: queue.DefaultPollInterval, StampGap: queue.DefaultStampGap, StallBound: queue.DefaultStallBound,
				Buffer: queue.DefaultBuffer, Retention: queue.DefaultRetention,
			},
			Store: repo.Options{
				RequestRetention: repo.DefaultRequestRetention, GroupCommit: repo.DefaultGroupCommit,
				HistoryRetention: reservation.DefaultHistoryRetention,
			},
			API: service.Options{
				MaxDuration: service.DefaultMaxDuration, MinHold: service.DefaultMinHold, MaxHold: service.DefaultMaxHold,
				MaxBatch: service.DefaultMaxBatch, MaxFreeWindow: service.DefaultMaxFreeWindow,
				SeriesMax: reservation.DefaultSeriesMax,
			},
			Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries},
			ReadIndex: readindex.Options{
				MaxReservations: readindex.DefaultMaxReservations, Horizon: readindex.DefaultHorizon,
				Wait: readindex.DefaultWait, CatalogueInterval: readindex.DefaultCatalogueInterval,
			},
		},
		NATS: NATSConfig{Stream: jetstream.DefaultStream, SubjectPrefix: jetstream.DefaultSubjectPrefix, Replicas: jetstream.DefaultReplicas},
	}
}

// flagSet is the flags of a Config, each with the rule its value must keep.
type flagSet struct {
	*flag.FlagSet
	rules []func() error
}

// positive declares a duration flag that must be above zero.
func (fs *flagSet) positive(p *time.Duration, name, usage string) {
	fs.DurationVar(p, name, *p, usage)
	fs.rules = append(fs.rules, func() error { return mustBe(*p > 0, name, "positive", p.String()) })
}

// positiveInt declares an int flag that must be above zero.
func (fs *flagSet) positiveInt(p *int, name, usage string) {
	fs.IntVar(p, name, *p, usage)
	fs.rules = append(fs.rules, func() error { return mustBe(*p > 0, name, "positive", fmt.Sprint(*p)) })
}

// nonNegative declares an int flag that must not be below zero.
func (fs *flagSet) nonNegative(p *int, name, usage string) {
	fs.IntVar(p, name, *p, usage)
	fs.rules = append(fs.rules, func() error { return mustBe(*p >= 0, name, "not negative", fmt.Sprint(*p)) })
}

func mustBe(ok bool, name, what, got string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("--%s (%s) must be %s, got %s", name, envName(name), what, got)
}

// flags declares the flags, each filling a field of c and showing its current value as the
// default.
func (c *Config) flags() *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("reservationd", flag.ContinueOnError)}
	s := &c.Server
	fs.StringVar(&s.GRPCAddr, "grpc-addr", s.GRPCAddr, "gRPC listen address")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", c.MySQLDSN, "MySQL DSN, e.g. root@tcp(127.0.0.1:3306)/reservation")
	fs.StringVar(&c.Redis.Addr, "redis-addr", c.Redis.Addr, "Redis for --lock redis: one address, or comma-separated sentinels (--redis-mode sentinel) or cluster seed nodes (--redis-mode cluster)")
	fs.StringVar(&c.Redis.Mode, "redis-mode", c.Redis.Mode, "standalone, sentinel or cluster")
	fs.StringVar(&c.Redis.MasterName, "redis-master-name", c.Redis.MasterName, "the master's name the sentinels know (--redis-mode sentinel)")
	fs.StringVar(&c.Redis.Username, "redis-username", c.Redis.Username, "Redis ACL user (default: the default user); the password comes from "+redisPasswordEnv+" or --redis-password-file")
	fs.StringVar(&c.Redis.PasswordFile, "redis-password-file", c.Redis.PasswordFile, "file holding the Redis password (instead of "+redisPasswordEnv+")")
	fs.IntVar(&c.Redis.DB, "redis-db", c.Redis.DB, "Redis database index (standalone and sentinel)")
	fs.BoolVar(&c.Redis.TLS, "redis-tls", c.Redis.TLS, "connect to Redis over TLS")
	fs.StringVar(&c.Redis.TLSCA, "redis-tls-ca", c.Redis.TLSCA, "PEM CA certificates that sign Redis's certificate (default: the system's)")
	fs.StringVar(&c.Redis.TLSCert, "redis-tls-cert", c.Redis.TLSCert, "PEM client certificate for Redis (with --redis-tls-key)")
	fs.StringVar(&c.Redis.TLSKey, "redis-tls-key", c.Redis.TLSKey, "PEM private key of --redis-tls-cert")
	fs.StringVar(&c.RedisLock.Prefix, "redis-prefix", c.RedisLock.Prefix, "prefix of every Redis key: deployments sharing a Redis need different ones")
	fs.StringVar(&c.Lock, "lock", c.Lock, "writer lock: redis (many replicas) or local (one replica)")
	fs.BoolVar(&c.Migrate, "migrate", c.Migrate, "apply schema migrations at start")
	fs.positive(&s.API.MaxDuration, "max-duration", "longest reservation allowed")
	fs.positive(&c.LockWait, "lock-wait", "longest wait for a resource's lock before ABORTED")
	fs.positive(&c.RedisLock.TTL, "lock-ttl", "lease of a Redis lock, renewed every third of it while held: a crashed replica's locks are free at most this long after it died")
	fs.positive(&s.Drain, "drain", "bound on draining in-flight calls at shutdown")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.positive(&s.Feed.PollInterval, "feed-poll", "how often the change feed looks for new changes")
	fs.positive(&s.Feed.StampGap, "feed-stamp-gap", "least time between two stamps of the feed's sequencer: each is a transaction, and one takes every change committed meanwhile")
	fs.positive(&s.Feed.StallBound, "feed-stall-bound", "how long a change may wait for its seq before the feed reports itself stalled (health "+server.FeedHealthService+", /readyz?feed=1)")
	fs.positiveInt(&s.Feed.Buffer, "feed-buffer", "changes kept in memory; a listener further behind is cut off with RESOURCE_EXHAUSTED")
	fs.positive(&s.Feed.Retention, "feed-retention", "how long changes are kept for listeners that resume")
	fs.positive(&s.API.MinHold, "hold-min", "shortest hold allowed")
	fs.positive(&s.API.MaxHold, "hold-max", "longest hold allowed")
	fs.positiveInt(&s.API.MaxBatch, "batch-max", "most reservations in one ReserveBatch")
	fs.positiveInt(&s.API.SeriesMax, "series-max", "most occurrences of one ReserveSeries: a rule that makes more is INVALID_ARGUMENT on rrule")
	fs.positive(&s.API.MaxFreeWindow, "free-window-max", "longest window a FreeSlots query may ask about")
	fs.positive(&s.Store.RequestRetention, "request-retention", "how long the outcome of a call with a request_id is kept for retries")
	fs.positive(&s.Store.HistoryRetention, "history-retention", "how long the history (History, and who cancelled a reservation) keeps a change, however short --feed-retention is; the reaper prunes it")
	fs.positive(&s.ReapInterval, "reap-interval", "how often lapsed holds are removed")
	fs.StringVar(&s.HTTPAddr, "http-addr", s.HTTPAddr, "HTTP listen address: JSON API, /metrics, /healthz, /readyz, /openapi.json")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate: serve gRPC and HTTP over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "PEM CA certificates: require client certificates they signed")
	fs.StringVar(&c.AuthFile, "auth-file", c.AuthFile, "JSON token file: turns bearer-token auth on (see package auth)")
	fs.positiveInt(&s.MaxMsgSize, "max-msg-size", "largest gRPC message received or sent, in bytes")
	fs.positiveInt(&s.MaxStreams, "max-streams", "most concurrent calls on one client connection")
	fs.positive(&s.DefaultDeadline, "default-deadline", "deadline of a unary call that comes without one")
	fs.BoolVar(&s.Pprof, "pprof", s.Pprof, "serve Go's profiles under /debug/pprof/ on the HTTP port")
	fs.positiveInt(&s.Store.GroupCommit, "group-commit", "most concurrent Reserve calls written in one transaction (1: each on its own)")
	fs.BoolVar(&s.Store.Precheck, "precheck", s.Store.Precheck, "refuse a window taken by a committed reservation before taking any lock (helps hot resources, costs a query per Reserve)")
	fs.nonNegative(&s.ReadIndex.MaxReservations, "read-index-max", "most live reservations the in-memory read index holds; past it, READ_YOUR_WRITES and BOUNDED reads go to the database (0: no read index)")
	fs.positive(&s.ReadIndex.Horizon, "read-index-horizon", "how far into the past the read index holds reservations: reads about earlier times go to the database")
	fs.positive(&s.ReadIndex.Wait, "read-index-wait", "longest wait of a READ_YOUR_WRITES read for the feed to bring its token's writes before the database answers")
	fs.positive(&s.ReadIndex.CatalogueInterval, "read-index-catalogue-interval", "how often the read index looks for catalogue changes: the catalogue's part of a BOUNDED read is at most this old")
	fs.nonNegative(&s.Cache.MaxEntries, "cache-entries", "committed reservations kept in memory to refuse a taken window without a lock or a query (0: no cache)")
	fs.StringVar(&c.OneStatementPerTrip, "one-statement-per-trip", c.OneStatementPerTrip, "send a write's statements one round trip each instead of together: auto (on for a Galera node, which needs it), on, or off")
	fs.BoolVar(&s.API.AllowPast, "allow-past-windows", s.API.AllowPast, "admit reservations whose window ends before now (by default refused with INVALID_ARGUMENT, BLOCKED ones excepted)")
	fs.StringVar(&c.Catalogue, "catalogue", c.Catalogue, "open (a Reserve of an unknown resource creates it, capacity 1, no pool) or strict (NOT_FOUND until PutResource made it)")
	n := &c.NATS
	fs.StringVar(&n.URLs, "nats-url", n.URLs, "NATS servers to export the change feed to, comma-separated (nats://host:4222,...): turns the export to NATS JetStream on (see docs/nats.md)")
	fs.StringVar(&n.Stream, "nats-stream", n.Stream, "JetStream stream the change feed is exported to; created if missing, its sequence the feed's seq")
	fs.StringVar(&n.SubjectPrefix, "nats-subject-prefix", n.SubjectPrefix, "subjects of the exported changes: <prefix>.<resource>.<moved from>")
	fs.positiveInt(&n.Replicas, "nats-replicas", "replicas of a stream the export creates")
	fs.StringVar(&n.CredsFile, "nats-creds", n.CredsFile, "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&n.NKeyFile, "nats-nkey", n.NKeyFile, "file holding a NATS NKey user's seed")
	fs.StringVar(&n.User, "nats-user", n.User, "NATS user; the password comes from "+natsPasswordEnv+" or --nats-password-file")
	fs.StringVar(&n.PasswordFile, "nats-password-file", n.PasswordFile, "file holding the NATS password (instead of "+natsPasswordEnv+")")
	fs.StringVar(&n.TLSCA, "nats-tls-ca", n.TLSCA, "PEM CA certificates that sign the NATS servers' certificates: connect over TLS")
	fs.StringVar(&n.TLSCert, "nats-tls-cert", n.TLSCert, "PEM client certificate for NATS (with --nats-tls-key)")
	fs.StringVar(&n.TLSKey, "nats-tls-key", n.TLSKey, "PEM private key of --nats-tls-cert")
	return fs
}

// parseFlags reads the flags; a flag not on the command line falls back to its environment
// variable, RESERVATION_ and its name in capitals (--lock-wait: RESERVATION_LOCK_WAIT).
func parseFlags(args []string) (Config, error) {
	c := DefaultConfig()
	fs := c.flags()
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (" + envName(f.Name) + ")" })
	// The help is printUsage's, on stdout, when run sees flag.ErrHelp; a bad flag is an error
	// pointing to it, not 100 lines of usage on stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if ok && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, usageError{err}
	}
	c.Server.Feed.StampInterval = c.Server.Feed.PollInterval
	c.RedisLock.Wait = c.LockWait
	c.Server.Store.StrictCatalogue = c.Catalogue == "strict"
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// usageError is a command line or environment that cannot run: reservationd exits 2 on it,
// as rsvctl does, pointing at its help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errUsage matches every usageError with errors.Is.
var errUsage = errors.New("usage")

func (e usageError) Is(target error) bool { return target == errUsage }

// Validate names every bad setting of c, each with its flag and environment variable.
func (c *Config) Validate() error {
	var errs []error
	for _, rule := range c.flags().rules {
		if err := rule(); err != nil {
			errs = append(errs, err)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level (%s): %w", envName("log-level"), err))
	}
	switch c.OneStatementPerTrip {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("--one-statement-per-trip (%s) must be auto, on or off, got %q", envName("one-statement-per-trip"), c.OneStatementPerTrip))
	}
	if c.Catalogue != "open" && c.Catalogue != "strict" {
		errs = append(errs, fmt.Errorf("--catalogue (%s) must be open or strict, got %q", envName("catalogue"), c.Catalogue))
	}
	if c.Lock != "redis" && c.Lock != "local" {
		errs = append(errs, fmt.Errorf("--lock must be redis or local, got %q", c.Lock))
	}
	if api := c.Server.API; api.MinHold > api.MaxHold {
		errs = append(errs, fmt.Errorf("--hold-min %s is longer than --hold-max %s", api.MinHold, api.MaxHold))
	}
	if c.TLSClientCA != "" && (c.TLSCert == "" || c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	errs = append(errs, c.redisErrors()...)
	errs = append(errs, c.natsErrors()...)
	return errors.Join(errs...)
}

// redisErrors are the combinations of the --redis-* flags that cannot work, each naming its flag.
func (c *Config) redisErrors() []error {
	var errs []error
	r := c.Redis
	addrs := lock.SplitAddrs(r.Addr)
	switch r.Mode {
	case lock.ModeStandalone:
		if len(addrs) > 1 {
			errs = append(errs, fmt.Errorf("--redis-addr: %d addresses, but --redis-mode standalone takes one (sentinel and cluster take several)", len(addrs)))
		}
	case lock.ModeSentinel:
		if r.MasterName == "" {
			errs = append(errs, errors.New("--redis-mode sentinel needs --redis-master-name"))
		}
	case lock.ModeCluster:
		if r.DB != 0 {
			errs = append(errs, fmt.Errorf("--redis-db %d: a Redis Cluster has only database 0", r.DB))
		}
	default:
		errs = append(errs, fmt.Errorf("--redis-mode must be standalone, sentinel or cluster, got %q", r.Mode))
	}
	if r.MasterName != "" && r.Mode != lock.ModeSentinel {
		errs = append(errs, fmt.Errorf("--redis-master-name is for --redis-mode sentinel, not %s", r.Mode))
	}
	if r.DB < 0 {
		errs = append(errs, fmt.Errorf("--redis-db must not be negative, got %d", r.DB))
	}
	if !r.TLS {
		for _, f := range []struct{ name, value string }{{"redis-tls-ca", r.TLSCA}, {"redis-tls-cert", r.TLSCert}, {"redis-tls-key", r.TLSKey}} {
			if f.value != "" {
				errs = append(errs, fmt.Errorf("--%s needs --redis-tls", f.name))
			}
		}
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		errs = append(errs, errors.New("--redis-tls-cert and --redis-tls-key go together"))
	}
	if p := c.RedisLock.Prefix; p == "" || strings.ContainsAny(p, "{}") {
		errs = append(errs, fmt.Errorf("--redis-prefix %q: must not be empty nor hold { or } (each lock's key carries its resource as a Cluster hash tag)", p))
	}
	if c.RedisLock.TTL > 0 && c.RedisLock.TTL < minLockTTL {
		errs = append(errs, fmt.Errorf("--lock-ttl %s: must be at least %s (a held lock is renewed every third of it, and a renewal may take a client timeout)", c.RedisLock.TTL, minLockTTL))
	}
	return errs
}

// natsErrors are the combinations of the --nats-* flags that cannot work, each naming its flag.
func (c *Config) natsErrors() []error {
	var errs []error
	n := c.NATS
	if n.URLs == "" {
		for _, f := range []struct{ name, value string }{{"nats-creds", n.CredsFile}, {"nats-nkey", n.NKeyFile}, {"nats-user", n.User},
			{"nats-password-file", n.PasswordFile}, {"nats-tls-ca", n.TLSCA}, {"nats-tls-cert", n.TLSCert}} {
			if f.value != "" {
				errs = append(errs, fmt.Errorf("--%s needs --nats-url", f.name))
			}
		}
		return errs
	}
	set := 0
	for _, v := range []string{n.CredsFile, n.NKeyFile, n.User} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, errors.New("--nats-creds, --nats-nkey and --nats-user: give one way to authenticate"))
	}
	if n.PasswordFile != "" && n.User == "" {
		errs = append(errs, errors.New("--nats-password-file needs --nats-user"))
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		errs = append(errs, errors.New("--nats-tls-cert and --nats-tls-key go together"))
	}
	if n.Stream == "" || strings.ContainsAny(n.Stream, ". *>\t") {
		errs = append(errs, fmt.Errorf("--nats-stream %q: a stream name must not be empty nor hold . * > or white space", n.Stream))
	}
	if p := n.SubjectPrefix; p == "" || strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		errs = append(errs, fmt.Errorf("--nats-subject-prefix %q: must be subject tokens joined by dots, without wildcards or white space", p))
	}
	return errs
}

// minLockTTL is the shortest --lock-ttl: a third of it must leave room for a renewal to time out
// (250ms) and be tried again before the lease lapses.
const minLockTTL = 900 * time.Millisecond

// unknownEnv lists the RESERVATION_* variables in environ that no flag reads: most likely a
// misspelt name, whose setting would otherwise be silently ignored. The test tooling's own
// variables (RESERVATION_TEST_*, RESERVATION_CHAOS_*) are not reported.
func unknownEnv(environ []string) []string {
	known := map[string]bool{redisPasswordEnv: true, natsPasswordEnv: true}
	c := DefaultConfig()
	c.flags().VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "RESERVATION_") || known[name] ||
			strings.HasPrefix(name, "RESERVATION_TEST_") || strings.HasPrefix(name, "RESERVATION_CHAOS_") {
			continue
		}
		unknown = append(unknown, name)
	}
	return unknown
}

func envName(flag string) string {
	return "RESERVATION_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
