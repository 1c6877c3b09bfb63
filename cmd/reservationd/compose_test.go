package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// There is no Docker engine here: this checks docker-compose.yml against the Compose
// specification with its reference loader, and the Dockerfile for what the issue asks.
func TestDeploymentFiles(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "../..",
		ConfigFiles: []types.ConfigFile{{Filename: "docker-compose.yml", Content: b}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("reservation", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	images := map[string]string{}
	var replicas []types.ServiceConfig
	built := 0
	for name, s := range project.Services {
		images[name] = s.Image
		if strings.HasPrefix(name, "reservationd") {
			replicas = append(replicas, s)
		}
		if s.Build != nil {
			built++
		}
	}
	if images["mysql"] != "mysql:8.4" || images["redis"] != "redis:7" {
		t.Errorf("images %v: want mysql:8.4 and redis:7", images)
	}
	if len(replicas) != 2 {
		t.Fatalf("%d reservationd services, want 2 replicas", len(replicas))
	}
	// One image, built once.
	if built != 1 || replicas[0].Image == "" || replicas[0].Image != replicas[1].Image {
		t.Errorf("%d services built; replicas run %q and %q: want one image built once", built, replicas[0].Image, replicas[1].Image)
	}
	for _, r := range replicas {
		if r.Build == nil && r.PullPolicy != types.PullPolicyNever {
			t.Errorf("%s: runs the built image, so it must never be pulled (pull_policy: never), got %q", r.Name, r.PullPolicy)
		}
	}
	hostPorts := map[string]bool{}
	for _, r := range replicas {
		env := r.Environment
		for _, k := range []string{"RESERVATION_MYSQL_DSN", "RESERVATION_REDIS_ADDR", "RESERVATION_GRPC_ADDR", "RESERVATION_HTTP_ADDR"} {
			if v := env[k]; v == nil || *v == "" {
				t.Errorf("%s: %s is not set", r.Name, k)
			}
		}
		if dsn := env["RESERVATION_MYSQL_DSN"]; dsn != nil && !strings.HasPrefix(*dsn, "reservation:") {
			t.Errorf("%s: connects as %q, want the app's own user from ops/mysql/init-app-user.sh", r.Name, *dsn)
		}
		if v := env["RESERVATION_LOCK"]; v == nil || *v != "redis" {
			t.Errorf("%s: replicas must share the Redis lock", r.Name)
		}
		for _, dep := range []string{"mysql", "redis"} {
			if d, ok := r.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: must wait for %s to be healthy", r.Name, dep)
			}
		}
		if hc := r.HealthCheck; hc == nil || strings.Join(hc.Test, " ") != "CMD /reservationd health" {
			t.Errorf("%s: health check %v, want the binary's own probe (reservationd health)", r.Name, hc)
		}
		for _, p := range r.Ports {
			if hostPorts[p.Published] {
				t.Errorf("%s: host port %s is published twice", r.Name, p.Published)
			}
			hostPorts[p.Published] = true
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %s published on %q, want 127.0.0.1 by default", r.Name, p.Published, p.HostIP)
			}
		}
	}
	mysql := project.Services["mysql"]
	mounted := false
	for _, v := range mysql.Volumes {
		mounted = mounted || strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") && strings.HasSuffix(v.Source, "ops/mysql/init-app-user.sh")
	}
	if !mounted {
		t.Errorf("mysql does not run ops/mysql/init-app-user.sh at its first start: volumes %v", mysql.Volumes)
	}
	if !strings.Contains(string(b), "gRPC-aware") || !strings.Contains(string(b), "load balancer") {
		t.Error("docker-compose.yml lacks the note on a gRPC-aware load balancer in front")
	}
	for _, name := range []string{"mysql", "redis"} {
		if project.Services[name].HealthCheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}

	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "FROM gcr.io/distroless/static", "USER nonroot", "EXPOSE 50051 8080"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q (multi-stage, static, non-root)", want)
		}
	}
}
