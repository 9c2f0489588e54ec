module palisade.dev/e2e/argocd-lua

go 1.23.0

require github.com/yuin/gopher-lua v1.1.1
