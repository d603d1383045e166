// Package deploy holds no code: its tests check the deployment files of this folder against the
// binary they deploy. They build the Dockerfiles' own `go build` lines (a static ELF for
// Dockerfile), decode every Kubernetes manifest strictly into the Kubernetes API types, and
// parse every flag and PULSE_* variable of the manifests and systemd units with the real
// `pulse serve` flag set.
package deploy
