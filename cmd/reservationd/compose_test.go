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
	for name, s := range project.Services {
		images[name] = s.Image
		if s.Build != nil {
			replicas = append(replicas, s)
		}
	}
	if images["mysql"] != "mysql:8.4" || images["redis"] != "redis:7" {
		t.Errorf("images %v: want mysql:8.4 and redis:7", images)
	}
	if len(replicas) != 2 {
		t.Fatalf("%d services built from the Dockerfile, want 2 replicas", len(replicas))
	}
	hostPorts := map[string]bool{}
	for _, r := range replicas {
		env := r.Environment
		for _, k := range []string{"RESERVATION_MYSQL_DSN", "RESERVATION_REDIS_ADDR", "RESERVATION_GRPC_ADDR", "RESERVATION_HTTP_ADDR"} {
			if v := env[k]; v == nil || *v == "" {
				t.Errorf("%s: %s is not set", r.Name, k)
			}
		}
		if v := env["RESERVATION_LOCK"]; v == nil || *v != "redis" {
			t.Errorf("%s: replicas must share the Redis lock", r.Name)
		}
		for _, dep := range []string{"mysql", "redis"} {
			if d, ok := r.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: must wait for %s to be healthy", r.Name, dep)
			}
		}
		for _, p := range r.Ports {
			if hostPorts[p.Published] {
				t.Errorf("%s: host port %s is published twice", r.Name, p.Published)
			}
			hostPorts[p.Published] = true
		}
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
