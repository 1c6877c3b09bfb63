package repo_test

import (
	"io/fs"
	"testing"

	"reservation/migrations"
	"reservation/repo"
	"reservation/repo/repotest"
)

// TestMigrateUpSaysWhatItApplied: on an empty database every migration is applied and the
// version is the newest; a second run applies none and reports the same version.
func TestMigrateUpSaysWhatItApplied(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewEmptyDB(t)
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v, %d files", err, len(files))
	}
	got, err := repo.MigrateUp(t.Context(), db.DB)
	if err != nil {
		t.Fatal(err)
	}
	if got.Applied != len(files) || got.Version != int64(len(files)) {
		t.Errorf("first MigrateUp: %+v, want %d applied, at version %d", got, len(files), len(files))
	}
	again, err := repo.MigrateUp(t.Context(), db.DB)
	if err != nil {
		t.Fatal(err)
	}
	if again.Applied != 0 || again.Version != got.Version {
		t.Errorf("second MigrateUp: %+v, want none applied, at version %d", again, got.Version)
	}
}
