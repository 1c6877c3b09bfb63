package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNATSFlags: the export is off without --nats-url; each bad combination of the --nats-*
// flags is refused with an error naming the flag; the password comes from the environment or
// a file, never both.
func TestNATSFlags(t *testing.T) {
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := exportOptions(cfg, func(string) string { return "" }); o != nil || err != nil {
		t.Fatalf("without --nats-url: export options %+v, %v; want none", o, err)
	}
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--nats-creds", "x.creds"}, "--nats-creds"},
		{[]string{"--nats-tls-ca", "ca.pem"}, "--nats-tls-ca"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-creds", "x.creds", "--nats-user", "u"}, "--nats-user"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-password-file", "p"}, "--nats-password-file"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-tls-cert", "c.pem"}, "--nats-tls-key"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-stream", "a.b"}, "--nats-stream"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-subject-prefix", "a.*"}, "--nats-subject-prefix"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-subject-prefix", "a..b"}, "--nats-subject-prefix"},
		{[]string{"--nats-url", "nats://a:4222", "--nats-replicas", "0"}, "--nats-replicas"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("parseFlags(%q) = %v, want an error naming %s", tc.args, err, tc.flag)
		}
	}

	t.Setenv("RESERVATION_NATS_URL", "nats://a:4222, nats://b:4222")
	cfg, err = parseFlags([]string{"--nats-user", "svc", "--nats-subject-prefix", "rsv.prod"})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{natsPasswordEnv: "s3cret"}
	o, err := exportOptions(cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Conn.URLs) != 2 || o.Conn.User != "svc" || o.Conn.Password != "s3cret" || o.Stream != "RESERVATION_CHANGES" || o.SubjectPrefix != "rsv.prod" || o.Replicas != 3 || o.Conn.TLS != nil {
		t.Errorf("export options %+v: want the settings of the environment and flags", o)
	}
	file := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.NATS.PasswordFile = file
	if _, err := exportOptions(cfg, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("password in a file and the environment: %v, want refused", err)
	}
	o, err = exportOptions(cfg, func(string) string { return "" })
	if err != nil || o.Conn.Password != "from-file" {
		t.Errorf("password from a file: %+v, %v", o, err)
	}
}
