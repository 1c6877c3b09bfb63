package jetstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// ConnConfig is how to reach the NATS servers, as NATS users expect to give it.
type ConnConfig struct {
	URLs []string // nats://host:port, tls://host:port; any of the cluster's servers
	Name string   // the connection's name, as the servers' monitoring shows it
	// CredsFile is a chained credentials file (JWT and NKey seed), as nsc writes it.
	CredsFile string
	// NKeySeedFile holds an NKey user's seed.
	NKeySeedFile string
	// User and Password authenticate with a user name; Password comes from a file or the
	// environment, never a flag.
	User, Password string
	// TLS, when set, connects over TLS with it (its RootCAs and Certificates: the CA and the
	// client certificate).
	TLS *tls.Config
}

// Validate names what cannot work together.
func (c ConnConfig) Validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("no NATS server URL"))
	}
	n := 0
	for _, set := range []bool{c.CredsFile != "", c.NKeySeedFile != "", c.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("give one of a credentials file, an NKey seed file and a user"))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("a NATS password needs a user"))
	}
	return errors.Join(errs...)
}

// options are the nats.go options of c. The connection reconnects for ever: the exporter
// decides when to give up on a publish, not the connection.
func (c ConnConfig) options() ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(c.Name), nats.MaxReconnects(-1)}
	switch {
	case c.CredsFile != "":
		if _, err := os.Stat(c.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS NKey seed file %s: %w", c.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLS != nil {
		opts = append(opts, nats.Secure(c.TLS))
	}
	return opts, nil
}

// Connect connects to the servers of c.
func Connect(c ConnConfig) (*nats.Conn, error) {
	opts, err := c.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", strings.Join(c.URLs, ","), err)
	}
	return nc, nil
}
