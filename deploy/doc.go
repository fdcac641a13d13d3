// Package deploy holds Sluice's Helm chart (helm/sluice) and the plain
// Kubernetes manifests rendered from it (kubernetes/sluice.yaml), and the
// tests that render the chart with Helm's own Go library, decode every
// object strictly with the Kubernetes API types, and check the shape the
// seed deployment has. It is a module of its own so that Helm's and
// Kubernetes' libraries never enter the sluice binary's module graph.
package deploy
