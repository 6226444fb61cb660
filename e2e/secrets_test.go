package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

const secretService = `apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, environment: dev}
spec:
  image: %s
  port: 8080
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  env:
    - {name: MODE, valueFrom: {config: {name: app, key: mode}}}
    - {name: DB_PASSWORD, valueFrom: {secret: {name: db, key: password}}}
  secretFiles:
    - {secret: db, mountPath: /run/secrets/db}
`

// readyInstance waits for one ready instance of service env/name and
// returns it.
func (s *server) readyInstance(env, name string) v1.InstanceStatus {
	s.t.Helper()
	var inst v1.InstanceStatus
	testutil.WaitForState(s.t, 60*time.Second, "a ready instance of "+name, func() (bool, string) {
		svc := s.service(env, name)
		for _, i := range svc.Status.Instances {
			if i.Ready {
				inst = i
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", svc.Status.Instances)
	})
	return inst
}

// onTmpfs says whether dir is on a tmpfs: its files are in memory, never
// on a disk.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func TestSecretsReachWorkloadsOnly(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "env", "create", "dev")
	if _, errOut, code := s.berth("", "env", "create", "dev"); code != 6 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("env create clash: exit %d, %s", code, errOut)
	}
	const value = "e2e-pa55-7b3f91c4"
	s.mustBerth("", "config", "set", "app", "mode=fast", "-e", "dev")
	dir := t.TempDir()

	// The secret is missing: the instance fails, saying which.
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "web.yaml", fmt.Sprintf(secretService, echoV1)))
	want := `secret "db" key "password" not found in environment "dev"`
	testutil.WaitForState(t, 60*time.Second, "the instance to fail on the missing secret", func() (bool, string) {
		svc := s.service("dev", "web")
		for _, i := range svc.Status.Instances {
			if i.Phase == v1.PhaseFailed && i.Message == want {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", svc.Status.Instances)
	})

	// Setting it starts the instance (the agent retries).
	pwFile := writeFile(t, dir, "pw", value)
	s.mustBerth("", "secret", "set", "db", "user=app", "--from-file", "password="+pwFile, "-e", "dev")
	inst := s.readyInstance("dev", "web")
	_, env, err := direct("GET", inst.IP, inst.Port, "/env")
	if err != nil || !strings.Contains(env, "DB_PASSWORD="+value+"\n") || !strings.Contains(env, "MODE=fast\n") {
		t.Fatalf("instance env: %v\n%s", err, env)
	}
	code, file, err := direct("GET", inst.IP, inst.Port, "/file?path=/run/secrets/db/password")
	if err != nil || code != 200 || file != value {
		t.Fatalf("secret file: %d %q %v", code, file, err)
	}
	code, _, _ = direct("POST", inst.IP, inst.Port, "/file?path=/run/secrets/db/password")
	if code == 200 {
		t.Fatal("the secret file is writable")
	}

	// Nothing the platform answers or keeps on disk holds the value.
	for _, args := range [][]string{
		{"get", "service", "web", "-e", "dev", "-o", "json"},
		{"describe", "service", "web", "-e", "dev"},
		{"secret", "ls", "-e", "dev", "-o", "json"},
		{"secret", "ls", "-A"},
		{"logs", "web", "-e", "dev"},
	} {
		if out := s.mustBerth("", args...); strings.Contains(out, value) {
			t.Errorf("berth %s shows the secret:\n%s", strings.Join(args, " "), out)
		}
	}
	if out := s.mustBerth("", "describe", "service", "web", "-e", "dev"); !strings.Contains(out, "<secret db/password>") {
		t.Errorf("describe does not say where the value comes from:\n%s", out)
	}
	if out := s.mustBerth("", "secret", "ls", "-e", "dev"); !strings.Contains(out, "password (17B)") {
		t.Errorf("secret ls:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(s.dataDir, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.key: %v %v", fi, err)
	}
	filepath.WalkDir(s.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != s.dataDir && onTmpfs(p) && !onTmpfs(filepath.Dir(p)) {
				return filepath.SkipDir // the per-instance tmpfs: memory, not disk
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(value)) {
			t.Errorf("%s holds the secret in plain text", p)
		}
		return nil
	})

	// Deleting the environment is refused while it holds things, unless
	// --cascade; then the instance's tmpfs goes too.
	if _, errOut, code := s.berth("", "env", "delete", "dev"); code != 6 || !strings.Contains(errOut, "--cascade") {
		t.Fatalf("env delete: exit %d %s", code, errOut)
	}
	s.mustBerth("", "env", "delete", "dev", "--cascade")
	testutil.WaitForState(t, 60*time.Second, "the instance's secret files to be gone", func() (bool, string) {
		entries, _ := os.ReadDir(filepath.Join(s.dataDir, "run", "values"))
		return len(entries) == 0, fmt.Sprint(entries)
	})
}

func TestScopedTokensAndQuota(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "env", "create", "dev", "--cpu", "2", "--memory", "1Gi")
	s.mustBerth("", "env", "create", "staging")
	tok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "dev", "--role", "deployer", "--name", "ci"))
	if !strings.HasPrefix(tok, "berth_") {
		t.Fatalf("token create printed %q", tok)
	}
	if out := s.mustBerth("", "token", "ls"); strings.Contains(out, tok) || !strings.Contains(out, "deployer") {
		t.Fatalf("token ls:\n%s", out)
	}
	dir := t.TempDir()
	svc := func(env string, replicas int) string {
		return writeFile(t, dir, env+".yaml", fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, environment: %s}
spec:
  image: %s
  replicas: %d
  resources: {cpu: 250m, memory: 512Mi}
`, env, echoV1, replicas))
	}
	asCI := func(args ...string) (string, string, int) {
		return s.berth("", append([]string{"--token", tok}, args...)...)
	}
	if _, errOut, code := asCI("apply", "-f", svc("staging", 1)); code != 4 || !strings.Contains(errOut, `environment "staging"`) {
		t.Fatalf("dev token applying to staging: exit %d %s", code, errOut)
	}
	if _, errOut, code := asCI("get", "services", "-e", "staging"); code != 4 {
		t.Fatalf("dev token reading staging: exit %d %s", code, errOut)
	}
	if _, errOut, code := asCI("token", "create", "--env", "dev", "--role", "admin"); code != 4 {
		t.Fatalf("deployer creating a token: exit %d %s", code, errOut)
	}
	if _, errOut, code := asCI("apply", "-f", svc("dev", 1)); code != 0 {
		t.Fatalf("dev token applying to dev: exit %d %s", code, errOut)
	}
	// Quota: 3 × 512Mi = 1.5Gi > 1Gi.
	_, errOut, code := s.berth("", "apply", "-f", svc("dev", 3))
	want := `quota exceeded in environment "dev": memory 1.5Gi requested (0 in use + 1.5Gi for service/web), quota 1Gi`
	if code != 3 || !strings.Contains(errOut, want) {
		t.Fatalf("over quota: exit %d\n%s\nwant %s", code, errOut, want)
	}
	s.mustBerth("", "token", "revoke", "ci")
	if _, _, code := asCI("get", "services", "-e", "dev"); code != 4 {
		t.Fatalf("revoked token: exit %d", code)
	}
}

func TestStackPromoteAndRollback(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	s.mustBerth("", "env", "create", "staging")
	s.mustBerth("", "env", "create", "prod")
	dir := t.TempDir()
	shop := filepath.Join(dir, "shop")
	os.MkdirAll(shop, 0o755)
	writeFile(t, shop, "values.yaml", "replicas: 1\ntag: v1\ngreeting: hello\n")
	writeFile(t, shop, "web.yaml", `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
spec:
  image: berth.test/echo:{{ .Values.tag }}
  replicas: {{ .Values.replicas }}
  env:
    - {name: GREETING, value: {{ .Values.greeting | quote }}}
`)
	staging := writeFile(t, dir, "values-staging.yaml", "greeting: hi from staging\n")
	prodValues := writeFile(t, dir, "values-prod.yaml", "greeting: hi from prod\nreplicas: 2\n")

	// A template error names file and line.
	writeFile(t, shop, "bad.yaml", "a: 1\nb: {{ nope }}\n")
	if _, errOut, code := s.berth("", "stack", "deploy", shop, "-e", "staging"); code != 3 || !strings.Contains(errOut, "bad.yaml: line 2:") {
		t.Fatalf("template error: exit %d %s", code, errOut)
	}
	os.Remove(filepath.Join(shop, "bad.yaml"))

	out := s.mustBerth("", "stack", "deploy", shop, "-e", "staging", "-f", staging)
	if !strings.Contains(out, "Service/web created") || !strings.Contains(out, "revision 1") {
		t.Fatalf("deploy: %s", out)
	}
	s.readyInstance("staging", "web")
	// The tag moves on in staging's values: diff says what would change.
	diff := s.mustBerth("", "stack", "diff", shop, "-e", "staging", "-f", staging, "--set", "tag=v2")
	if !strings.Contains(diff, "Service/web configured") || !strings.Contains(diff, "-  image: berth.test/echo:v1") ||
		!strings.Contains(diff, "+  image: berth.test/echo:v2") {
		t.Fatalf("diff:\n%s", diff)
	}
	s.mustBerth("", "stack", "deploy", shop, "-e", "staging", "-f", staging, "--set", "tag=v2")
	var stagingDigest string
	testutil.WaitForState(t, 60*time.Second, "staging on v2", func() (bool, string) {
		svc := s.service("staging", "web")
		stagingDigest = svc.Status.ImageDigest
		return svc.Status.Revision == 2 && stagingDigest != "", fmt.Sprintf("revision %d digest %q", svc.Status.Revision, stagingDigest)
	})

	// Promote: prod runs exactly staging's digest, with prod's values.
	out = s.mustBerth("", "stack", "promote", "shop", "--from", "staging", "--to", "prod", "-f", prodValues)
	if !strings.Contains(out, "Service/web created") {
		t.Fatalf("promote: %s", out)
	}
	testutil.WaitForState(t, 60*time.Second, "prod's digest", func() (bool, string) {
		svc := s.service("prod", "web")
		return svc.Status.ImageDigest != "", fmt.Sprint(svc.Status)
	})
	prod := s.service("prod", "web")
	if prod.Status.ImageDigest != stagingDigest || *prod.Spec.Replicas != 2 || prod.Spec.Env[0].Value != "hi from prod" {
		t.Fatalf("prod: digest %s (staging %s), replicas %d, env %+v", prod.Status.ImageDigest, stagingDigest, *prod.Spec.Replicas, prod.Spec.Env)
	}

	// Rollback staging to revision 1: v1's digest again.
	s.mustBerth("", "stack", "rollback", "shop", "-e", "staging")
	hist := s.mustBerth("", "stack", "history", "shop", "-e", "staging")
	if !strings.Contains(hist, "3*") || !strings.Contains(hist, "rollback to revision 1") {
		t.Fatalf("history:\n%s", hist)
	}
	stk, err := s.client.Stack(context.Background(), "staging", "shop")
	if err != nil {
		t.Fatal(err)
	}
	v1Pin := stk.Status.History[0].Images["Service/web"]
	testutil.WaitForState(t, 60*time.Second, "staging back on v1", func() (bool, string) {
		svc := s.service("staging", "web")
		return svc.Spec.Image == v1Pin && strings.HasSuffix(v1Pin, svc.Status.ImageDigest) && svc.Status.ImageDigest != stagingDigest,
			fmt.Sprintf("image %s digest %s, want %s", svc.Spec.Image, svc.Status.ImageDigest, v1Pin)
	})
}
