// Package buildinfo says which build is running: the module version, the VCS revision and the
// Go version, as the Go toolchain stamped them into the binary (runtime/debug.ReadBuildInfo).
// reservationd and rsvctl print it for --version, the metrics export it as
// reservation_build_info, and the OpenAPI document carries the version as info.version.
package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is one build's identity. A field the toolchain did not record is "unknown"; the
// version of a build from a source tree, not a tagged module, is "devel".
type Info struct {
	Version   string // the main module's version: a tag, a pseudo-version, or "devel"
	Revision  string // the VCS commit, with "-modified" when the tree had uncommitted changes
	Time      string // the commit's time (RFC 3339), or "unknown"
	GoVersion string // the toolchain that built it, e.g. go1.26.8
}

// Read returns the running binary's build info.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return From(bi)
}

// From reads an Info out of Go's build info; nil (a binary built without module support)
// gives "unknown" fields but the running Go version.
func From(bi *debug.BuildInfo) Info {
	i := Info{Version: "unknown", Revision: "unknown", Time: "unknown", GoVersion: runtime.Version()}
	if bi == nil {
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	switch v := bi.Main.Version; v {
	case "":
	case "(devel)":
		i.Version = "devel"
	default:
		i.Version = v
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && i.Revision != "unknown" {
		i.Revision += "-modified"
	}
	return i
}

// Version is the running build's version for documents that carry one (OpenAPI's
// info.version): the module version, with the short revision when the version alone does not
// name a commit ("devel+1a2b3c4d5e6f").
func Version() string { return Read().Short() }

// Short is the version, with the first 12 characters of the revision when the version is
// "devel" or "unknown" and a revision is known.
func (i Info) Short() string {
	if (i.Version == "devel" || i.Version == "unknown") && i.Revision != "unknown" {
		rev, modified := strings.CutSuffix(i.Revision, "-modified")
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += "-modified"
		}
		return i.Version + "+" + rev
	}
	return i.Version
}

// String is one line for --version: "devel (revision 1a2b…, 2030-03-01T14:00:00Z) go1.26.8".
func (i Info) String() string {
	s := i.Version + " (revision " + i.Revision
	if i.Time != "unknown" {
		s += ", " + i.Time
	}
	return s + ") " + i.GoVersion
}

// OpenAPI returns doc, an OpenAPI (or Swagger 2) JSON document, with info.version set to
// version. A document that is not a JSON object is returned as it is.
func OpenAPI(doc []byte, version string) []byte {
	var d map[string]json.RawMessage
	if err := json.Unmarshal(doc, &d); err != nil {
		return doc
	}
	var info map[string]any
	if raw, ok := d["info"]; ok {
		if err := json.Unmarshal(raw, &info); err != nil {
			return doc
		}
	}
	if info == nil {
		info = map[string]any{}
	}
	info["version"] = version
	b, err := json.Marshal(info)
	if err != nil {
		return doc
	}
	d["info"] = b
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return doc
	}
	return out
}

// Labels are the build's labels for the reservation_build_info metric.
func (i Info) Labels() map[string]string {
	return map[string]string{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion}
}
