package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"reservation/buildinfo"
)

func TestBuildInfo(t *testing.T) {
	srv := httptest.NewServer(New().Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b := buildinfo.Read()
	want := fmt.Sprintf("reservation_build_info{goversion=%q,revision=%q,version=%q} 1\n", b.GoVersion, b.Revision, b.Version)
	if !strings.Contains(string(body), want) {
		t.Errorf("no %q in /metrics:\n%s", want, body)
	}
}
