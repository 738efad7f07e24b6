// bundle-validate runs the checks of `operator-sdk bundle validate DIR --select-optional
// suite=operatorframework` with the libraries operator-sdk itself calls: operator-registry's
// bundle format and content validation, then operator-framework/api's default validators and
// the validators labelled suite=operatorframework. It exists because the Go module proxy this
// machine reaches does not serve github.com/operator-framework/operator-sdk (403), while it
// does serve operator-registry and operator-framework/api.
//
// Usage: bundle-validate [-k8s-version 1.37] DIR
// Prints every error and warning; exits 1 when there is an error.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	apimanifests "github.com/operator-framework/api/pkg/manifests"
	apivalidation "github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	registrybundle "github.com/operator-framework/operator-registry/pkg/lib/bundle"
	"github.com/sirupsen/logrus"
)

func main() {
	k8sVersion := flag.String("k8s-version", "", "Kubernetes version the bundle targets (for the deprecated-API check)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bundle-validate [-k8s-version X.Y] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	logger := logrus.NewEntry(logrus.StandardLogger())
	failed := false

	// The bundle's layout: metadata/annotations.yaml, manifests/, and the content checks
	// operator-registry runs when it builds or unpacks a bundle image.
	val := registrybundle.NewImageValidator(nil, logger)
	if err := val.ValidateBundleFormat(dir); err != nil {
		fmt.Printf("ERROR bundle format: %v\n", err)
		failed = true
	}
	manifests := filepath.Join(dir, "manifests")
	if err := val.ValidateBundleContent(manifests); err != nil {
		fmt.Printf("ERROR bundle content: %v\n", err)
		failed = true
	}

	bundle, err := apimanifests.GetBundleFromDir(manifests)
	if err != nil {
		fmt.Printf("ERROR reading bundle: %v\n", err)
		os.Exit(1)
	}
	results := apivalidation.DefaultBundleValidators.Validate(bundle.ObjectsToValidate()...)

	// The optional suite: every object, plus the optional values, as operator-sdk passes them.
	objs := bundle.ObjectsToValidate()
	for _, obj := range bundle.Objects {
		objs = append(objs, obj)
	}
	optional := map[string]string{}
	if *k8sVersion != "" {
		optional["k8s-version"] = *k8sVersion
	}
	objs = append(objs, optional)
	suite := []struct {
		name string
		run  func(...interface{}) []apierrors.ManifestResult
	}{
		{"operatorhub", apivalidation.OperatorHubV2Validator.Validate},
		{"standardcapabilities", apivalidation.StandardCapabilitiesValidator.Validate},
		{"standardcategories", apivalidation.StandardCategoriesValidator.Validate},
		{"alpha-deprecated-apis", apivalidation.AlphaDeprecatedAPIsValidator.Validate},
		{"good-practices", apivalidation.GoodPracticesValidator.Validate},
	}
	for _, v := range suite {
		results = append(results, v.run(objs...)...)
	}

	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Printf("ERROR %s: %s\n", r.Name, e.Error())
			failed = true
		}
		for _, w := range r.Warnings {
			fmt.Printf("WARN %s: %s\n", r.Name, w.Error())
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("bundle %s: valid (default validators and suite=operatorframework)\n", dir)
}
