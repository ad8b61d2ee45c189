package unstuck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func goTool(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("go"); err == nil {
		return path
	}
	path := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the go command is not found")
	}
	return path
}

// The README's worker and orchestrator are examples/worker and examples/orchestrator as
// they are; built and run against the test server, the orchestrator's run succeeds and
// the worker drains and exits 0 on SIGTERM.
func TestReadmeExamplesRunAsTheyAre(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range []string{"worker", "orchestrator"} {
		source, err := os.ReadFile(filepath.Join("examples", name, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, source) {
			t.Errorf("README.md does not show examples/%s/main.go as it is", name)
		}
		bins[name] = filepath.Join(dir, name)
		build := exec.Command(goTool(t), "build", "-o", bins[name], "./examples/"+name)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
		}
	}
	env := append(os.Environ(), "UNSTUCK_URL="+testStack.url, "UNSTUCK_TOKEN="+tokens["admin"])
	worker := exec.Command(bins["worker"])
	worker.Env = env
	var workerLog bytes.Buffer
	worker.Stdout, worker.Stderr = &workerLog, &workerLog
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	defer func() {
		_ = worker.Process.Kill()
	}()

	orchestrator := exec.Command(bins["orchestrator"])
	orchestrator.Env = env
	out, err := orchestrator.CombinedOutput()
	if err != nil {
		t.Fatalf("the orchestrator: %v\n%s\nworker:\n%s", err, out, workerLog.String())
	}
	text := string(out)
	for _, want := range []string{"created run-2026-11-24-001", "succeeded 1", `{"summary":"done: summarise the incident"}`,
		"running -> succeeded"} {
		if !strings.Contains(text, want) {
			t.Errorf("the orchestrator's output lacks %q:\n%s", want, text)
		}
	}
	_ = worker.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the worker exited with %v:\n%s", err, workerLog.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not exit on SIGTERM")
	}
	if !strings.Contains(workerLog.String(), "Succeeded:1") {
		t.Errorf("the worker's log:\n%s", workerLog.String())
	}
}
