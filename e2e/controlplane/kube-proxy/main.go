// Command kube-proxy is the upstream kube-proxy, unmodified. It runs inside the real-node
// guest so pods reach the API server through the in-cluster `kubernetes` Service.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
