package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/auth"
	"reservation/chaos"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// httpJSON makes an HTTP call with a JSON body (nil for none) and returns the status and body.
func httpJSON(t *testing.T, client *http.Client, method, url string, body any, header ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type jsonObject = map[string]any

func field(t *testing.T, b []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	for _, p := range path {
		m, ok := v.(jsonObject)
		if !ok {
			t.Fatalf("no %v in %s", path, b)
		}
		v = m[p]
	}
	return v
}

// TestHTTPGateway calls every RPC as JSON over HTTP, streams included, and checks the
// documents and metrics the HTTP port serves.
func TestHTTPGateway(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	base := "http://" + d.http
	c := &http.Client{Timeout: 10 * time.Second}
	window := func(h int) jsonObject {
		return jsonObject{"user_id": "alice", "resource_id": "room-1",
			"start": fmt.Sprintf("2032-01-01T%02d:00:00Z", h), "end": fmt.Sprintf("2032-01-01T%02d:00:00Z", h+1)}
	}

	code, b := httpJSON(t, c, "POST", base+"/v1/reservations", jsonObject{"reservation": window(9), "request_id": "http-1"})
	if code != 200 {
		t.Fatalf("Reserve: %d %s", code, b)
	}
	id := field(t, b, "reservation", "id").(string)
	if code, b = httpJSON(t, c, "POST", base+"/v1/reservations", jsonObject{"reservation": window(9)}); code != 409 || !strings.Contains(string(b), "RESERVATION_CONFLICT") || field(t, b, "error", "code") != 9.0 {
		t.Fatalf("conflicting Reserve: %d %s; want 409 with the conflict's ErrorInfo under \"error\"", code, b)
	}
	if code, b = httpJSON(t, c, "POST", base+"/v1/reservations:batch", jsonObject{"reservations": []any{window(11), window(12)}}); code != 200 || len(field(t, b, "reservations").([]any)) != 2 {
		t.Fatalf("ReserveBatch: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "POST", base+"/v1/reservations/"+id+":confirm", jsonObject{"expected_version": 1}); code != 200 || field(t, b, "reservation", "status") != "RESERVATION_STATUS_CONFIRMED" {
		t.Fatalf("Confirm: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "PATCH", base+"/v1/reservations/"+id, jsonObject{"note": "window seat"}); code != 200 || field(t, b, "reservation", "note") != "window seat" {
		t.Fatalf("Update: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/v1/reservations/"+id, nil); code != 200 || field(t, b, "reservation", "version") != "3" {
		t.Fatalf("Get: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/v1/reservations?resource_id=room-1&page_size=2", nil); code != 200 || len(field(t, b, "reservations").([]any)) != 2 || field(t, b, "next_page_token") == nil || field(t, b, "reservations").([]any)[0].(jsonObject)["resource_id"] != "room-1" {
		t.Fatalf("Filter: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/v1/reservations:query?resource_id=room-1", nil); code != 200 || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("Query: %d %s; want 3 lines of JSON", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/v1/resources/room-1/free?start=2032-01-01T08:00:00Z&end=2032-01-01T14:00:00Z&min_duration=3600s", nil); code != 200 || len(field(t, b, "free").([]any)) != 3 {
		t.Fatalf("FreeSlots: %d %s; want 08-09, 10-11 and 13-14", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/v1/reservations/not-an-id", nil); code != 400 || !strings.Contains(string(b), "BadRequest") {
		t.Fatalf("Get of a bad id: %d %s; want 400 with a BadRequest", code, b)
	}

	// Listen as newline-delimited JSON: the changes so far, then a live one.
	resp, err := c.Get(base + "/v1/changes?after_seq=0")
	if err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() []byte {
		if !lines.Scan() {
			t.Fatalf("Listen stream ended: %v", lines.Err())
		}
		return lines.Bytes()
	}
	for want := 1; want <= 5; want++ {
		if seq := field(t, next(), "result", "seq"); seq != strconv.Itoa(want) {
			t.Fatalf("Listen line %d has seq %v", want, seq)
		}
	}
	if code, b = httpJSON(t, c, "DELETE", base+"/v1/reservations/"+id+"?expected_version=3", nil); code != 200 {
		t.Fatalf("Cancel: %d %s", code, b)
	}
	if op := field(t, next(), "result", "op"); op != "RESERVATION_UPDATE_TYPE_DELETE" {
		t.Fatalf("live change is %v, want the DELETE", op)
	}
	resp.Body.Close()
	// A stream refused at once keeps its HTTP status.
	if code, b = httpJSON(t, c, "GET", base+"/v1/changes?after_seq=999", nil); code != 400 || !strings.Contains(string(b), "ahead of the newest change") {
		t.Fatalf("Listen after a seq not yet assigned: %d %s; want 400 (OUT_OF_RANGE)", code, b)
	}

	if code, b = httpJSON(t, c, "GET", base+"/openapi.json", nil); code != 200 || field(t, b, "paths", "/v1/reservations") == nil {
		t.Fatalf("openapi.json: %d %.200s", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/healthz", nil); code != 200 {
		t.Fatalf("healthz: %d %s", code, b)
	}
	if code, b = httpJSON(t, c, "GET", base+"/readyz", nil); code != 200 {
		t.Fatalf("readyz: %d %s", code, b)
	}
	reserves := regexp.MustCompile(`reservation_rpcs_total\{code="OK",method="/reservation.v1.ReservationService/Reserve"\} (\d+)`)
	scrape := func() (string, int) {
		_, b := httpJSON(t, c, "GET", base+"/metrics", nil)
		m := reserves.FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("metrics lack the Reserve count:\n%s", b)
		}
		n, _ := strconv.Atoi(m[1])
		return string(b), n
	}
	text, before := scrape()
	for _, name := range []string{"reservation_rpc_duration_seconds_bucket", "reservation_lock_wait_seconds_count", "reservation_conflicts_total 1",
		"reservation_tx_retries_total", "reservation_cache_entries", "reservation_cache_refusals_total", "reservation_feed_subscribers", "reservation_feed_lag_seconds", "reservation_feed_leader 1", "go_sql_open_connections"} {
		if !strings.Contains(text, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	httpJSON(t, c, "POST", base+"/v1/reservations", jsonObject{"reservation": window(15)})
	if _, after := scrape(); after != before+1 {
		t.Errorf("Reserve count went from %d to %d after one more call", before, after)
	}
}

// TestHealthFollowsTheDatabase stops a private MariaDB under a running replica: health turns
// NOT_SERVING and /readyz 503, then back when the database returns.
func TestHealthFollowsTheDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB of its own: not run under -short (make check); make test runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	mdb, addr, err := chaos.StartMariaDB(ctx, filepath.Join(dir, "mysql"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mdb.Kill)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN=root@tcp("+addr+")/mysql?timeout=1s", "RESERVATION_LOCK=local")
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)
	health := healthpb.NewHealthClient(conn)
	wait := func(want healthpb.HealthCheckResponse_ServingStatus, ready int) {
		t.Helper()
		for {
			resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			code, _ := httpJSON(t, http.DefaultClient, "GET", "http://"+d.http+"/readyz", nil)
			if err == nil && resp.GetStatus() == want && code == ready {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("health never became %v with /readyz %d (last %v, %v, %d)", want, ready, resp.GetStatus(), err, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	mdb.Kill()
	wait(healthpb.HealthCheckResponse_NOT_SERVING, 503)
	if err := mdb.Restart(); err != nil {
		t.Fatal(err)
	}
	wait(healthpb.HealthCheckResponse_SERVING, 200)
}

// TestTLS serves both ports over TLS, then also requires client certificates.
func TestTLS(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	dir := t.TempDir()
	ca := newCA(t)
	serverCert, serverKey := ca.issue(t, dir, "server", true)
	clientCert, clientKey := ca.issue(t, dir, "client", false)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	clientPair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("client certificates required %v", mutual), func(t *testing.T) {
			env := []string{"RESERVATION_MYSQL_DSN=" + dsn, "RESERVATION_LOCK=local", "RESERVATION_TLS_CERT=" + serverCert, "RESERVATION_TLS_KEY=" + serverKey}
			if mutual {
				env = append(env, "RESERVATION_TLS_CLIENT_CA="+caFile)
			}
			d := startDaemon(t, env...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			with := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientPair}}
			without := &tls.Config{RootCAs: roots}
			conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(with)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			d.waitServing(t, ctx, conn)
			if _, err := pb.NewReservationServiceClient(conn).Get(ctx, &pb.GetRequest{Id: "01a204ab-6318-7baf-a7ed-a35f0ef10590"}); status.Code(err) != codes.NotFound {
				t.Fatalf("gRPC over TLS: %v, want NOT_FOUND", err)
			}
			if !mutual { // the container probe finds the TLS port through the server's own environment
				probe := exec.CommandContext(ctx, d.cmd.Path, "health")
				probe.Env = append(os.Environ(), append(env, "RESERVATION_GRPC_ADDR="+d.addr)...)
				if out, err := probe.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "SERVING" {
					t.Errorf("reservationd health over TLS: %v %s", err, out)
				}
			}
			bare, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(without)))
			if err != nil {
				t.Fatal(err)
			}
			defer bare.Close()
			_, err = healthpb.NewHealthClient(bare).Check(ctx, &healthpb.HealthCheckRequest{})
			if mutual != (status.Code(err) == codes.Unavailable) {
				t.Fatalf("gRPC without a client certificate: %v", err)
			}
			httpsWith := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: with}}
			if code, b := httpJSON(t, httpsWith, "GET", "https://"+d.http+"/readyz", nil); code != 200 {
				t.Fatalf("HTTPS: %d %s", code, b)
			}
			httpsWithout := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: without}}
			_, err = httpsWithout.Get("https://" + d.http + "/readyz")
			if mutual != (err != nil) {
				t.Fatalf("HTTPS without a client certificate: %v", err)
			}
			if resp, err := http.Get("http://" + d.http + "/readyz"); err == nil && resp.StatusCode == 200 {
				t.Fatal("plain HTTP answered on a TLS port")
			}
		})
	}
}

// ca is a certificate authority made for one test.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *ca {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate and key for 127.0.0.1 signed by the CA and returns their files.
func (c *ca) issue(t *testing.T, dir, name string, server bool) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageClientAuth
	if server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestAuth checks every rule of auth, both ways, through gRPC and the HTTP gateway.
func TestAuth(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	file := filepath.Join(t.TempDir(), "tokens.json")
	tokens := fmt.Sprintf(`{"tokens": [
		{"sha256": %q, "user": "alice", "role": "user"},
		{"sha256": %q, "user": "bob", "role": "user"},
		{"sha256": %q, "user": "desk", "role": "admin"}]}`, auth.Hash("alice-secret"), auth.Hash("bob-secret"), auth.Hash("desk-secret"))
	if err := os.WriteFile(file, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local", "RESERVATION_AUTH_FILE="+file)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn) // health needs no token
	c := pb.NewReservationServiceClient(conn)
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	alice, bob, desk := as("alice-secret"), as("bob-secret"), as("desk-secret")
	window := func(user string, h int, st pb.ReservationStatus) *pb.ReserveRequest {
		start := time.Date(2032, 2, 1, h, 0, 0, 0, time.UTC)
		return &pb.ReserveRequest{RequestId: "same-id", Reservation: &pb.Reservation{UserId: user, ResourceId: "room", Status: st,
			Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}}
	}
	want := func(what string, err error, code codes.Code) {
		t.Helper()
		if status.Code(err) != code {
			t.Errorf("%s: %v, want %v", what, err, code)
		}
	}

	_, err := c.Get(ctx, &pb.GetRequest{Id: "01a204ab-6318-7baf-a7ed-a35f0ef10590"})
	want("no token", err, codes.Unauthenticated)
	_, err = c.Get(as("guess"), &pb.GetRequest{Id: "01a204ab-6318-7baf-a7ed-a35f0ef10590"})
	want("unknown token", err, codes.Unauthenticated)

	mine, err := c.Reserve(alice, window("", 9, 0))
	if err != nil || mine.Reservation.UserId != "alice" {
		t.Fatalf("alice reserves without naming herself: %v, %v", mine, err)
	}
	_, err = c.Reserve(alice, window("bob", 10, 0))
	want("alice reserves for bob", err, codes.PermissionDenied)
	_, err = c.Reserve(alice, window("alice", 10, pb.ReservationStatus_RESERVATION_STATUS_BLOCKED))
	want("alice blocks", err, codes.PermissionDenied)
	// Request ids are each user's own: bob's "same-id" is not alice's.
	bobs, err := c.Reserve(bob, window("", 11, 0))
	want("bob reuses alice's request id", err, codes.OK)
	blocked, err := c.Reserve(desk, window("bob", 12, pb.ReservationStatus_RESERVATION_STATUS_BLOCKED))
	want("the admin blocks for bob", err, codes.OK)
	if blocked.GetReservation().GetUserId() != "bob" {
		t.Errorf("admin's reservation for bob belongs to %q", blocked.GetReservation().GetUserId())
	}

	id := mine.Reservation.Id
	_, err = c.Get(bob, &pb.GetRequest{Id: id})
	want("bob reads alice's", err, codes.NotFound)
	_, err = c.Confirm(bob, &pb.ConfirmRequest{Id: id})
	want("bob confirms alice's", err, codes.NotFound)
	_, err = c.Update(bob, &pb.UpdateRequest{Id: id, Note: "mine now"})
	want("bob edits alice's", err, codes.NotFound)
	_, err = c.Cancel(bob, &pb.CancelRequest{Id: id})
	want("bob cancels alice's", err, codes.NotFound)
	_, err = c.Get(alice, &pb.GetRequest{Id: id})
	want("alice reads hers", err, codes.OK)
	_, err = c.Get(desk, &pb.GetRequest{Id: id})
	want("the admin reads alice's", err, codes.OK)
	_, err = c.Filter(bob, &pb.FilterRequest{UserId: "alice"})
	want("bob lists alice's", err, codes.PermissionDenied)
	page, err := c.Filter(bob, &pb.FilterRequest{})
	if err != nil || len(page.Reservations) != 2 {
		t.Fatalf("bob lists his: %v, %v; want his 2", page, err)
	}
	for _, r := range page.Reservations {
		if r.UserId != "bob" {
			t.Errorf("bob's list holds %s's reservation", r.UserId)
		}
	}
	if all, err := c.Filter(desk, &pb.FilterRequest{}); err != nil || len(all.Reservations) != 3 {
		t.Errorf("the admin lists all: %v, %v; want 3", all, err)
	}

	// Listen: alice hears only hers; the admin hears everything.
	zero := uint64(0)
	heard := func(ctx context.Context) []string {
		s, err := c.Listen(ctx, &pb.ListenRequest{AfterSeq: &zero})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		for {
			m, err := s.Recv()
			if err != nil || lctx.Err() != nil {
				return ids
			}
			ids = append(ids, m.Reservation.UserId)
			if len(ids) == 3 {
				return ids
			}
		}
	}
	lctx, lcancel := context.WithTimeout(alice, 2*time.Second)
	if got := heard(lctx); len(got) != 1 || got[0] != "alice" {
		t.Errorf("alice heard changes of %v, want only hers", got)
	}
	lcancel()
	if got := heard(desk); len(got) != 3 {
		t.Errorf("the admin heard %v, want 3 changes", got)
	}
	_ = bobs

	// The same rules over HTTP: the gateway passes the Authorization header on.
	hc := &http.Client{Timeout: 5 * time.Second}
	if code, b := httpJSON(t, hc, "GET", "http://"+d.http+"/v1/reservations/"+id, nil); code != 401 {
		t.Errorf("HTTP without a token: %d %s, want 401", code, b)
	}
	for token, want := range map[string]string{"": `Bearer realm="reservation"`, "Bearer guess": `Bearer realm="reservation", error="invalid_token"`} {
		req, _ := http.NewRequest("GET", "http://"+d.http+"/v1/reservations/"+id, nil)
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != want {
			t.Errorf("HTTP with token %q: %d, WWW-Authenticate %q; want 401, %q (RFC 6750)", token, resp.StatusCode, got, want)
		}
	}
	if code, b := httpJSON(t, hc, "GET", "http://"+d.http+"/v1/reservations/"+id, nil, "Authorization", "Bearer bob-secret"); code != 404 {
		t.Errorf("HTTP, bob reads alice's: %d %s, want 404", code, b)
	}
	if code, b := httpJSON(t, hc, "GET", "http://"+d.http+"/v1/reservations/"+id, nil, "Authorization", "Bearer alice-secret"); code != 200 {
		t.Errorf("HTTP, alice reads hers: %d %s, want 200", code, b)
	}
}
