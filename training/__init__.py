"""Training: the commands at the top (train, crossval, compare, ensemble, reexport, add_ood, golden)
and the parts they share in packages: data/, nets/, evaluation/, export/, crossval/."""
