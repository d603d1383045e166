package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: %q: want Key=value in a section, on one line", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// readEnvFile reads NAME=value lines as systemd's EnvironmentFile does
// (without quotes, which these files do not use).
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, `"'\$`) {
			t.Errorf("%s: %q: keep values unquoted and without $", path, line)
		}
		env = append(env, line)
	}
	return env
}

// hardening are the [Service] settings the unit must keep.
var hardening = map[string]string{
	"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
	"PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
	"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
	"MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "LockPersonality": "yes",
}

// TestSystemd checks deploy/systemd/pulse@.service for each role: its
// ExecStart, Environment= and EnvironmentFile= settings as the real binary
// reads them, the credentials behind the _FILE twins, the hardening, the
// stop timeout against the drain; and systemd-analyze verify accepts it.
func TestSystemd(t *testing.T) {
	bin := pulseBinary(t)
	path := filepath.Join("systemd", "pulse@.service")
	u := readUnit(t, path)
	svc := u["Service"]
	if svc == nil {
		t.Fatalf("%s: no [Service]", path)
	}
	for k, want := range hardening {
		if got := svc[k]; !slices.Equal(got, []string{want}) {
			t.Errorf("%s: %s=%q; want %q", path, k, got, want)
		}
	}
	if got := svc["ExecStart"]; len(got) != 1 || !strings.HasPrefix(got[0], "/usr/local/bin/pulse serve ") {
		t.Fatalf("%s: ExecStart=%q; want one /usr/local/bin/pulse serve ...", path, got)
	}
	creds := map[string]string{}
	for _, c := range svc["LoadCredential"] {
		id, src, _ := strings.Cut(c, ":")
		creds[id] = src
	}

	for _, role := range roles {
		where := path + " as pulse@" + role
		inst := func(s string) string { return strings.ReplaceAll(s, "%i", role) }
		args := strings.Fields(inst(svc["ExecStart"][0]))[1:]
		var env []string
		for _, f := range svc["EnvironmentFile"] {
			f = inst(f)
			local := map[string]string{"/etc/pulse/pulse.env": filepath.Join("production", "pulse.env"),
				"-/etc/pulse/" + role + ".env": filepath.Join("systemd", role+".env")}[f]
			if local == "" {
				t.Errorf("%s: EnvironmentFile=%s: the test knows no file of this folder for it", where, f)
				continue
			}
			env = append(env, readEnvFile(t, local)...)
		}
		for _, e := range svc["Environment"] {
			k, v, _ := strings.Cut(e, "=")
			if id, ok := strings.CutPrefix(v, "%d/"); ok && creds[id] == "" {
				t.Errorf("%s: %s=%s: no LoadCredential=%s:...", where, k, v, id)
			}
			env = append(env, e)
		}
		fs := checkServe(t, bin, where, args, env)
		if got := flagString(fs, "roles"); got != role {
			t.Errorf("%s: --roles %q; want %q", where, got, role)
		}
		if dd := flagString(fs, "data-dir"); dd != "/var/lib/pulse/"+role || !slices.Contains(svc["StateDirectory"], "pulse/%i") {
			t.Errorf("%s: --data-dir %s with StateDirectory=%q; want the role's state directory /var/lib/pulse/%s", where, dd, svc["StateDirectory"], role)
		}
		stop := svc["TimeoutStopSec"]
		need := flagDuration(fs, "drain-grace") + flagDuration(fs, "shutdown-timeout")
		if d, err := time.ParseDuration(strings.Join(stop, "") + "s"); len(stop) != 1 || err != nil || d <= need {
			t.Errorf("%s: TimeoutStopSec=%q; want more than --drain-grace + --shutdown-timeout = %v", where, stop, need)
		}
	}
	for id := range creds {
		if !slices.ContainsFunc(svc["Environment"], func(e string) bool { return strings.HasSuffix(e, "=%d/"+id) }) {
			t.Errorf("%s: LoadCredential=%s:... that no Environment= line hands to pulse", path, id)
		}
	}
	systemdVerify(t, path, bin)
}

// systemdVerify runs systemd-analyze verify on an instance of the unit,
// with ExecStart pointing at the test's binary (verify checks that it is
// executable).
func systemdVerify(t *testing.T, path, bin string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: the unit was checked by this test only")
		return
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "pulse@ingest.service")
	if err := os.WriteFile(inst, []byte(strings.ReplaceAll(string(text), "ExecStart=/usr/local/bin/pulse ", "ExecStart="+bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", inst).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}
