package unstuck

// The test harness: a throwaway redis-server and a real `unstuck serve` (UNSTUCK_BIN) on
// free ports, started once for the package by TestMain and killed at its end, as
// clients/python/tests/harness.py does.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var tokens = map[string]string{"admin": "adm1n-secret-1", "worker": "w0rker-secret-1",
	"read": "r3ad-secret-1", "orchestrator": "0rch-secret-1"}

// A fast watchdog for the tests; executions set their own short timings when they need them.
var fastWatchdog = map[string]string{
	"UNSTUCK_WATCHDOG__LEASE_TTL":         "1s",
	"UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL": "50ms",
	"UNSTUCK_WATCHDOG__WORKER_TIMEOUT":    "1s",
}

// fastTimings: executions the watchdog retries quickly after a lost heartbeat.
func fastTimings() *Timings {
	return &Timings{HeartbeatTimeout: Ptr(time.Second), StuckThreshold: Ptr(200 * time.Millisecond),
		BackoffBase: Ptr(time.Duration(0)), MaxAttempts: Ptr(2)}
}

type stack struct {
	url        string
	redis      *exec.Cmd
	serve      *exec.Cmd
	redisPort  int
	dir        string
	serveLog   string
	routesUsed sync.Map // "METHOD path" -> true
	exited     map[*exec.Cmd]chan struct{}
}

// start starts cmd and a goroutine that waits for it (exited is closed when it ends).
func (s *stack) start(cmd *exec.Cmd) (chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	s.exited[cmd] = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return exited, nil
}

var testStack *stack

func TestMain(m *testing.M) {
	if mode := os.Getenv("UNSTUCK_GO_TEST_WORKER"); mode != "" {
		os.Exit(runTestWorker(mode)) // this binary re-executed as a worker process
	}
	flag.Parse()
	s, err := startStack()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testStack = s
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		code = s.checkEveryRouteUsed()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "serve's log: %s\n%s\n", s.serveLog, tail(s.serveLog))
	}
	s.stop()
	os.Exit(code)
}

func unstuckBin() (string, error) {
	path := os.Getenv("UNSTUCK_BIN")
	if path == "" {
		path = filepath.Join("..", "..", "target", "debug", "unstuck")
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("UNSTUCK_BIN is not set: these tests run against a real `unstuck serve`; " +
				"build it (cargo build) and run e.g. UNSTUCK_BIN=$PWD/target/debug/unstuck go test ./... in clients/go")
		}
	}
	return filepath.Abs(path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func startStack() (*stack, error) {
	binary, err := unstuckBin()
	if err != nil {
		return nil, err
	}
	redisBin := os.Getenv("UNSTUCK_REDIS_SERVER")
	if redisBin == "" {
		redisBin = "redis-server"
	}
	if redisBin, err = exec.LookPath(redisBin); err != nil {
		return nil, fmt.Errorf("redis-server not found: install it (make redis) or set UNSTUCK_REDIS_SERVER")
	}
	s := &stack{exited: map[*exec.Cmd]chan struct{}{}}
	if s.dir, err = os.MkdirTemp("", "unstuck-go-"); err != nil {
		return nil, err
	}
	if err := s.startRedis(redisBin); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.startServe(binary); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *stack) logFile(name string) (*os.File, string, error) {
	path := filepath.Join(s.dir, name)
	f, err := os.Create(path)
	return f, path, err
}

func (s *stack) startRedis(bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.redisPort = port
	log, path, err := s.logFile("redis.log")
	if err != nil {
		return err
	}
	s.redis = exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", s.dir)
	s.redis.Stdout, s.redis.Stderr, s.redis.Dir = log, log, s.dir
	exited, err := s.start(s.redis)
	if err != nil {
		return err
	}
	return waitReady("redis-server", exited, path, func() bool {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprint(conn, "PING\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	})
}

func (s *stack) startServe(binary string) error {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UNSTUCK_LEDGER__") && !strings.HasPrefix(kv, "UNSTUCK_WATCHDOG__") &&
			!strings.HasPrefix(kv, "UNSTUCK_SERVER__") {
			env = append(env, kv)
		}
	}
	for k, v := range fastWatchdog {
		env = append(env, k+"="+v)
	}
	var pairs []string
	for scope, secret := range tokens {
		pairs = append(pairs, scope+":"+secret)
	}
	env = append(env, fmt.Sprintf("UNSTUCK_LEDGER__REDIS_URL=redis://127.0.0.1:%d/", s.redisPort),
		"UNSTUCK_LEDGER__NAMESPACE=go-"+randomHex(6), "UNSTUCK_SERVER__TOKENS="+strings.Join(pairs, ","))
	for try := 0; ; try++ {
		// The port is picked here and bound by serve a moment later: retry if taken.
		port, err := freePort()
		if err != nil {
			return err
		}
		log, path, err := s.logFile(fmt.Sprintf("serve-%d.log", try))
		if err != nil {
			return err
		}
		s.serveLog = path
		s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
		s.serve = exec.Command(binary, "serve")
		s.serve.Env = append(env, fmt.Sprintf("UNSTUCK_SERVER__LISTEN=127.0.0.1:%d", port))
		s.serve.Stdout, s.serve.Stderr, s.serve.Dir = log, log, s.dir
		exited, err := s.start(s.serve)
		if err != nil {
			return err
		}
		probe, _ := NewClient(s.url, "")
		err = waitReady("unstuck serve", exited, path, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			status, err := probe.Healthz(ctx)
			return err == nil && status == "ok"
		})
		select {
		case <-exited:
			if err != nil && try < 2 {
				continue
			}
		default:
		}
		return err
	}
}

// waitReady polls ready until it holds; an error when the process exits first or 30 s pass.
func waitReady(what string, exited chan struct{}, log string, ready func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited\n%s", what, tail(log))
		default:
		}
		if ready() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after 30s\n%s", what, tail(log))
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func (s *stack) stop() {
	for _, p := range []*exec.Cmd{s.serve, s.redis} {
		exited, ok := s.exited[p]
		if !ok {
			continue
		}
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-exited
		}
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// client returns a client of the test server with the token of scope ("" for none),
// recording the routes it calls.
func (s *stack) client(scope string) *Client {
	c, err := NewClient(s.url, tokens[scope])
	if err != nil {
		panic(err)
	}
	c.onRequest = func(method, route string) { s.routesUsed.Store(method+" "+route, true) }
	return c
}

// checkEveryRouteUsed: every route of the table was called by some test.
func (s *stack) checkEveryRouteUsed() int {
	var missing []string
	for _, r := range routes {
		if _, ok := s.routesUsed.Load(r.Method + " " + r.Path); !ok {
			missing = append(missing, r.Method+" "+r.Path+" ("+r.Call+")")
		}
	}
	if len(missing) == 0 {
		return 0
	}
	sort.Strings(missing)
	fmt.Fprintf(os.Stderr, "FAIL: routes of the client's table no test called:\n  %s\n", strings.Join(missing, "\n  "))
	return 1
}

// unique returns prefix-<random>.
func unique(prefix string) string { return prefix + "-" + randomHex(4) }

// waitFor polls check until it returns true.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
