"""Disruptions take one pod at a time, drains never wait on broken pods, replicas spread out.

PodDisruptionBudgets evict unhealthy pods freely (`unhealthyPodEvictionPolicy: AlwaysAllow`);
every Deployment spreads over nodes, and the production overlay over zones too.
"""

from __future__ import annotations

from tests.deploy.manifests import SINGLETONS, matches, of_kind, one

DEPLOYMENTS = ("gateway", "tf-serving")
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def spread(objects: list[dict], name: str) -> dict[str, dict]:
    pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
    constraints = pod.get("topologySpreadConstraints", [])
    by_key = {c["topologyKey"]: c for c in constraints}
    assert len(by_key) == len(constraints), f"{name}: two constraints on one topology key"
    return by_key


def test_every_deployment_has_a_pdb_that_evicts_unhealthy_pods(objects):
    for name in DEPLOYMENTS:
        pdb = one(objects, "PodDisruptionBudget", name)["spec"]
        assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow", name
        # maxUnavailable (not minAvailable) keeps working as the HPA changes the count.
        assert pdb.get("maxUnavailable") == 1 and "minAvailable" not in pdb, name
        hpa = one(objects, "HorizontalPodAutoscaler", name)["spec"]
        assert hpa["minReplicas"] >= 1


def test_replicas_spread_over_nodes_without_blocking_scheduling(objects):
    for name in DEPLOYMENTS:
        labels = one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        node = spread(objects, name)[HOSTNAME]
        assert node["whenUnsatisfiable"] == "ScheduleAnyway", name
        assert node["maxSkew"] == 1
        assert matches(node["labelSelector"]["matchLabels"], labels), name
        # Spread each ReplicaSet on its own: during a rollout the old one must not skew the new.
        assert node.get("matchLabelKeys") == ["pod-template-hash"], name


def test_production_spreads_over_zones_and_nodes(production_objects):
    for name in DEPLOYMENTS:
        labels = one(production_objects, "Deployment", name)["spec"]["template"]["metadata"]
        constraints = spread(production_objects, name)
        assert set(constraints) == {HOSTNAME, ZONE}, name
        zone = constraints[ZONE]
        assert zone["whenUnsatisfiable"] == "ScheduleAnyway" and zone["maxSkew"] == 1
        assert matches(zone["labelSelector"]["matchLabels"], labels["labels"]), name
        # At least one pod per zone of a three-zone region.
        assert one(production_objects, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 3


def test_every_deployment_is_covered(objects):
    assert sorted(d["metadata"]["name"] for d in of_kind(objects, "Deployment")) == sorted(
        DEPLOYMENTS + SINGLETONS
    )


def test_singletons_run_one_pod_on_their_volume_and_never_two(objects):
    for name in SINGLETONS:
        spec = one(objects, "Deployment", name)["spec"]
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", name
        hpas = [
            h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
        ]
        assert name not in hpas, name
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims, f"{name}: its state lives on a PersistentVolumeClaim"
        for claim in claims:
            assert one(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == [
                "ReadWriteOnce"
            ]
