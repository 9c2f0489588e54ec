// Command kube-controller-manager is the upstream controller manager, unmodified. The
// local control plane runs only its garbage collector (objects whose owner is gone).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
