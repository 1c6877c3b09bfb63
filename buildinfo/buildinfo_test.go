package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "reservation", Version: "v0.0.0-20301201214853-dfc4b24543b8"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "dfc4b24543b8440ad3e96d588ff90bc9bb8923cb"}, {Key: "vcs.time", Value: "2030-12-01T21:48:53Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, c := range []struct {
		bi          *debug.BuildInfo
		line, short string
		revision    string
	}{
		{stamped, "v0.0.0-20301201214853-dfc4b24543b8 (revision dfc4b24543b8440ad3e96d588ff90bc9bb8923cb-modified, 2030-12-01T21:48:53Z) go1.26.8",
			"v0.0.0-20301201214853-dfc4b24543b8", "dfc4b24543b8440ad3e96d588ff90bc9bb8923cb-modified"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "dfc4b24543b8440ad3e96d588ff90bc9bb8923cb"}}},
			"devel (revision dfc4b24543b8440ad3e96d588ff90bc9bb8923cb) go1.26.8", "devel+dfc4b24543b8", "dfc4b24543b8440ad3e96d588ff90bc9bb8923cb"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "devel (revision unknown) go1.26.8", "devel", "unknown"},
		{nil, "unknown (revision unknown) " + runtime.Version(), "unknown", "unknown"},
	} {
		i := From(c.bi)
		if i.String() != c.line || i.Short() != c.short || i.Revision != c.revision {
			t.Errorf("%+v: String %q Short %q; want %q, %q", c.bi, i.String(), i.Short(), c.line, c.short)
		}
	}
	if got := Read(); got.GoVersion != runtime.Version() {
		t.Errorf("Read: Go version %q, want %q", got.GoVersion, runtime.Version())
	}
}

func TestOpenAPI(t *testing.T) {
	doc := []byte(`{"swagger": "2.0", "info": {"title": "reservation/v1/reservation.proto", "version": "version not set"}, "paths": {}}`)
	var got struct {
		Swagger string
		Info    struct{ Title, Version string }
		Paths   map[string]any
	}
	if err := json.Unmarshal(OpenAPI(doc, "devel+dfc4b24543b8"), &got); err != nil {
		t.Fatal(err)
	}
	if got.Info.Version != "devel+dfc4b24543b8" || got.Info.Title != "reservation/v1/reservation.proto" || got.Swagger != "2.0" || got.Paths == nil {
		t.Errorf("stamped document: %+v", got)
	}
	if string(OpenAPI([]byte("not json"), "v1")) != "not json" {
		t.Error("a document that is not JSON was changed")
	}
}
