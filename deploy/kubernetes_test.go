package deploy

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/kubernetes, by kind.
type manifests struct {
	deployments []*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	where       map[runtime.Object]string // file:document
}

// readManifests decodes every document of every YAML file in dir strictly
// (unknown or duplicate fields are errors) into the Kubernetes API types,
// skipping kustomization.yaml; it returns what it could not decode.
func readManifests(t *testing.T, dir string) (*manifests, []error) {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	var errs []error
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, where: map[runtime.Object]string{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		r := kyaml.NewYAMLReader(bufio.NewReader(f))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			where := fmt.Sprintf("%s, document %d", filepath.Base(file), i)
			obj, _, err := dec.Decode(doc, nil, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			m.where[obj] = where
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments = append(m.deployments, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *corev1.Service:
				m.services = append(m.services, o)
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			default:
				errs = append(errs, fmt.Errorf("%s: a %T, which this test does not check", where, obj))
			}
		}
		f.Close()
	}
	return m, errs
}

// TestStrictDecoding: the strict decoder rejects what a loose one would
// drop, so that the manifests' checks below mean something.
func TestStrictDecoding(t *testing.T) {
	dir := t.TempDir()
	f := func(doc, want string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errs := readManifests(t, dir)
		if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), want) }) {
			t.Errorf("decoding %q: errors %v; want one containing %q", doc, errs, want)
		}
	}
	f("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 3}\n", `unknown field "spec.replica"`)
	f("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: b, A: c}\n", `already set in map`)
	f("apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: x}\n", `no kind "Deploymnt"`)
}

// TestKubernetes checks deploy/kubernetes: one Deployment per role from one
// image, with probes on /healthz and /readyz, resources, a
// PodDisruptionBudget each, and flags and PULSE_* settings that the real
// binary accepts.
func TestKubernetes(t *testing.T) {
	bin := pulseBinary(t)
	m, errs := readManifests(t, "kubernetes")
	for _, err := range errs {
		t.Error(err)
	}
	checkKustomization(t)

	secretKeys := map[string]bool{}
	for _, s := range m.secrets {
		for k := range s.StringData {
			secretKeys[s.Name+"/"+k] = true
		}
	}
	var images []string
	seen := map[string]string{} // role -> Deployment
	for _, d := range m.deployments {
		where := m.where[d] + " (" + d.Name + ")"
		pod := d.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Errorf("%s: %d containers; want 1", where, len(pod.Containers))
			continue
		}
		c := pod.Containers[0]
		images = append(images, c.Image)

		env := containerEnv(t, where, c, m.configMaps)
		fs := checkServe(t, bin, where, c.Args, env)
		role := fs.Lookup("roles").Value.String()
		if !slices.Contains(roles, role) {
			t.Errorf("%s: --roles %q; want one role of %v", where, role, roles)
		}
		if other, dup := seen[role]; dup {
			t.Errorf("%s: role %s runs in %s too; want one Deployment per role", where, role, other)
		}
		seen[role] = d.Name

		checkProbes(t, where, c, fs)
		checkResources(t, where, c, env)
		checkGrace(t, where, pod, fs)
		checkPodSecurity(t, where, pod, c)
		checkMounts(t, where, pod, c, env, fs, secretKeys)
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the selector does not match the pod template's labels (%v)", where, err)
		}
		checkPDB(t, m, d)
	}
	for _, r := range roles {
		if seen[r] == "" {
			t.Errorf("no Deployment runs role %s", r)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(images)))) != 1 {
		t.Errorf("the Deployments run images %q; want one image for every role", images)
	}
	checkTargets(t, m)
}

// containerEnv is what the container's process sees: envFrom ConfigMaps,
// then env (which wins), as NAME=value.
func containerEnv(t *testing.T, where string, c corev1.Container, cms map[string]*corev1.ConfigMap) []string {
	t.Helper()
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("%s: envFrom %+v; want ConfigMaps only (secrets are mounted as files)", where, from)
			continue
		}
		cm := cms[from.ConfigMapRef.Name]
		if cm == nil {
			t.Errorf("%s: envFrom the ConfigMap %q, which no manifest defines", where, from.ConfigMapRef.Name)
			continue
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range cm.Data {
				if !yield(k) {
					return
				}
			}
		}) {
			set(k, cm.Data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("%s: %s comes from %+v; want plain values (secrets as _FILE twins)", where, e.Name, e.ValueFrom)
			continue
		}
		set(e.Name, e.Value)
	}
	var env []string
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env
}

func lookupEnv(env []string, name string) (string, bool) {
	for _, kv := range slices.Backward(env) {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// checkProbes: liveness on /healthz, readiness on /readyz, both on the
// container port the process listens on (--http-addr).
func checkProbes(t *testing.T, where string, c corev1.Container, fs *flag.FlagSet) {
	t.Helper()
	_, portStr, err := net.SplitHostPort(flagString(fs, "http-addr"))
	port, _ := strconv.Atoi(portStr)
	if err != nil || port == 0 {
		t.Errorf("%s: --http-addr %q: want host:port with a fixed port", where, flagString(fs, "http-addr"))
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}, {"startupProbe", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s", where, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s: %s on %s; want %s", where, p.name, p.probe.HTTPGet.Path, p.path)
		}
		target := p.probe.HTTPGet.Port
		got := target.IntValue()
		if target.StrVal != "" {
			got = 0
			for _, cp := range c.Ports {
				if cp.Name == target.StrVal {
					got = int(cp.ContainerPort)
				}
			}
		}
		if got != port {
			t.Errorf("%s: %s on port %s (%d); want %d of --http-addr", where, p.name, target.String(), got, port)
		}
	}
}

// checkResources: CPU and memory requests, a memory limit, and GOMEMLIMIT
// below it.
func checkResources(t *testing.T, where string, c corev1.Container, env []string) {
	t.Helper()
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("%s: requests %v; want cpu and memory", where, req)
	}
	if lim.Memory().IsZero() {
		t.Errorf("%s: no memory limit", where)
		return
	}
	if lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("%s: memory limit %s below the request %s", where, lim.Memory(), req.Memory())
	}
	v, ok := lookupEnv(env, "GOMEMLIMIT")
	if !ok {
		t.Errorf("%s: no GOMEMLIMIT; want one below the memory limit %s", where, lim.Memory())
		return
	}
	n, err := goMemLimit(v)
	if err != nil {
		t.Errorf("%s: GOMEMLIMIT=%s: %v", where, v, err)
	} else if n >= lim.Memory().Value() {
		t.Errorf("%s: GOMEMLIMIT=%s is not below the memory limit %s", where, v, lim.Memory())
	}
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does: bytes with an
// optional B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive size the Go runtime reads")
	}
	return n * mult, nil
}

// checkGrace: Kubernetes waits for the drain (--drain-grace, then
// --shutdown-timeout) before it kills.
func checkGrace(t *testing.T, where string, pod corev1.PodSpec, fs *flag.FlagSet) {
	t.Helper()
	need := flagDuration(fs, "drain-grace") + flagDuration(fs, "shutdown-timeout")
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %v; want more than --drain-grace + --shutdown-timeout = %v", where, ptrString(pod.TerminationGracePeriodSeconds), need)
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "(unset)"
	}
	return fmt.Sprint(*p)
}

// checkPodSecurity: non-root, read-only root, no privilege escalation, no
// capabilities.
func checkPodSecurity(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: want securityContext.runAsNonRoot", where)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: want the container read-only, without privilege escalation, dropping ALL capabilities", where)
	}
}

// checkMounts: with a read-only root, the data dir must be a volume; every
// file a _FILE or file flag names must lie in a mounted Secret that has
// that key.
func checkMounts(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, env []string, fs *flag.FlagSet, secretKeys map[string]bool) {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(path string) (corev1.VolumeMount, bool) {
		for _, vm := range c.VolumeMounts {
			if path == vm.MountPath || strings.HasPrefix(path, vm.MountPath+"/") {
				return vm, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	if dd := flagString(fs, "data-dir"); !filepath.IsAbs(dd) {
		t.Errorf("%s: --data-dir %q; want an absolute path on a volume", where, dd)
	} else if vm, ok := mountOf(dd); !ok || vm.ReadOnly {
		t.Errorf("%s: --data-dir %s is on no writable volume (the root filesystem is read-only)", where, dd)
	}
	for _, kv := range env {
		k, path, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(k, "_FILE") {
			continue
		}
		vm, ok := mountOf(path)
		if !ok {
			t.Errorf("%s: %s=%s is on no volume", where, k, path)
			continue
		}
		v := volumes[vm.Name]
		if v.Secret == nil {
			t.Errorf("%s: %s=%s is on volume %s, which is not a Secret", where, k, path, vm.Name)
			continue
		}
		key := strings.TrimPrefix(strings.TrimPrefix(path, vm.MountPath), "/")
		if !secretKeys[v.Secret.SecretName+"/"+key] {
			t.Errorf("%s: %s=%s: the Secret %q (secret.example.yaml) has no key %q", where, k, path, v.Secret.SecretName, key)
		}
	}
}

// checkPDB: exactly one PodDisruptionBudget selects the Deployment's pods,
// and it lets at most one go (or keeps at least one).
func checkPDB(t *testing.T, m *manifests, d *appsv1.Deployment) {
	t.Helper()
	var found []string
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("%s: %v", m.where[p], err)
			continue
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		found = append(found, p.Name)
		if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
			t.Errorf("%s: want exactly one of maxUnavailable and minAvailable", m.where[p])
		}
	}
	if len(found) != 1 {
		t.Errorf("Deployment %s: PodDisruptionBudgets %q select its pods; want exactly one", d.Name, found)
	}
}

// checkTargets: Services and autoscalers point at Deployments that exist.
func checkTargets(t *testing.T, m *manifests) {
	t.Helper()
	for _, s := range m.services {
		n := 0
		for _, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: the Service selects the pods of %d Deployments; want 1", m.where[s], n)
		}
	}
	for _, h := range m.hpas {
		if !slices.ContainsFunc(m.deployments, func(d *appsv1.Deployment) bool {
			return h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name
		}) {
			t.Errorf("%s: scales %s %s, which no manifest defines", m.where[h], h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
	}
}

// checkKustomization: kustomization.yaml lists every manifest but the
// example Secret, and names the image the Deployments run.
func checkKustomization(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("kubernetes", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName,omitempty"`
			NewTag  string `json:"newTag,omitempty"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && b != "secret.example.yaml" {
			want = append(want, b)
		}
	}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml: resources %q; want %q", got, want)
	}
}
