package lock

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis deployment modes of ClientConfig.Mode.
const (
	ModeStandalone = "standalone"
	ModeSentinel   = "sentinel"
	ModeCluster    = "cluster"
)

// ClientConfig says how to reach the Redis of a locker.
type ClientConfig struct {
	// Addrs is the one address of a standalone Redis, the sentinels of a Sentinel deployment,
	// or seed nodes of a cluster.
	Addrs      []string
	Mode       string // ModeStandalone (also when empty), ModeSentinel or ModeCluster
	MasterName string // the Sentinel master's name; Sentinel only
	Username   string // ACL user; empty for the default user
	Password   string
	DB         int         // database index; not on a cluster
	TLS        *tls.Config // nil: plain TCP
}

// Client timeouts: a dead or frozen Redis must cost a write a few hundred milliseconds at most,
// since the write then goes on under the database guard.
const (
	clientTimeout = 250 * time.Millisecond
	poolSize      = 64 // a lock call holds a connection for one round trip
)

// ClientOptions returns the options recommended for the client of a Redis locker: timeouts of
// 250ms, one dial attempt, no retries, and context deadlines honoured on every command.
func ClientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		DialTimeout:           clientTimeout,
		DialerRetries:         1,
		ReadTimeout:           clientTimeout,
		WriteTimeout:          clientTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              poolSize,
		PoolTimeout:           clientTimeout,
	}
}

// NewClient returns the client of a locker for cfg, with the options ClientOptions recommends:
// a *redis.Client for a standalone Redis, a failover client that follows the Sentinels'
// promotions, or a *redis.ClusterClient.
//
// The cluster client sends a command at most twice (MaxRedirects 1: once more after a
// network error or a MOVED), so a dead master costs a lock call about two dial timeouts
// before it fails and the write goes on under the database guard; the locker then asks the
// client to reload the slot map, which finds the promoted replica.
func NewClient(cfg ClientConfig) (redis.UniversalClient, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redis: no address")
	}
	switch cfg.Mode {
	case "", ModeStandalone:
		if len(cfg.Addrs) != 1 {
			return nil, fmt.Errorf("redis: standalone mode takes one address, got %d", len(cfg.Addrs))
		}
		o := ClientOptions(cfg.Addrs[0])
		o.Username, o.Password, o.DB, o.TLSConfig = cfg.Username, cfg.Password, cfg.DB, cfg.TLS
		return redis.NewClient(o), nil
	case ModeSentinel:
		if cfg.MasterName == "" {
			return nil, errors.New("redis: sentinel mode needs the master's name")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    cfg.MasterName,
			SentinelAddrs: cfg.Addrs,
			Username:      cfg.Username,
			Password:      cfg.Password,
			DB:            cfg.DB,
			TLSConfig:     cfg.TLS,
			DialTimeout:   clientTimeout,
			// One dial attempt: a dead master's address is refused at once, and the
			// Sentinels name the promoted one on the next dial.
			DialerRetries:         1,
			ReadTimeout:           clientTimeout,
			WriteTimeout:          clientTimeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			PoolSize:              poolSize,
			PoolTimeout:           clientTimeout,
		}), nil
	case ModeCluster:
		if cfg.DB != 0 {
			return nil, errors.New("redis: a cluster has only database 0")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                 cfg.Addrs,
			Username:              cfg.Username,
			Password:              cfg.Password,
			TLSConfig:             cfg.TLS,
			MaxRedirects:          1,
			DialTimeout:           clientTimeout,
			DialerRetries:         1,
			ReadTimeout:           clientTimeout,
			WriteTimeout:          clientTimeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			MinRetryBackoff:       time.Millisecond,
			MaxRetryBackoff:       10 * time.Millisecond,
			PoolSize:              poolSize,
			PoolTimeout:           clientTimeout,
		}), nil
	}
	return nil, fmt.Errorf("redis: unknown mode %q (standalone, sentinel or cluster)", cfg.Mode)
}

// SplitAddrs splits a comma-separated list of addresses, dropping blanks.
func SplitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash tag, the part
// between the first "{" and the next "}" when that is not empty, else of the whole key.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
