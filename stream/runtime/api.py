"""The worker's HTTP API, in Faust's web idiom: each route a view, a viewer's request served by its owner.

Routes (``topics/http/openapi.json`` describes them; a test holds the two together):

- ``GET /viewers/{viewer}/recommendations`` (scope ``read``): the latest snapshot, byte for byte
  as on the ``recommendations`` topic; with ``fresh=true``, a list made at read time;
- ``GET /viewers/{viewer}/profile`` (scope ``profile``): what is held about the viewer and used,
  in words and numbers;
- ``GET /groups/recommendations?viewers=a,b`` (scope ``read``): a list for viewers watching together;
- ``POST /viewers/{viewer}/commands`` (scope ``commands``): publish a command;
- ``GET /health``, ``GET /metrics``: no token.

A viewer's profile and snapshot live with the worker that holds its partition of
``playback-events``. A request for a viewer that reaches another worker is forwarded to
the owner with Faust's router (``app.router.route_req``, the mechanism behind
``app.table_route``), Authorization header included: the owner checks the token again.
Keys are partitioned as Kafka's default partitioner does (murmur2), which is what
co-partitioning the input topics asks of producers. A group's members may live on several
workers: the worker answering asks each member's owner for what the group list needs
(``GET /peers/viewers/{viewer}/taste``), with a proof made from the peer key of the shared
token file, which clients do not have.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import faust
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from stream.learning.model import PartitionModel
from stream.learning.profile import DAYPARTS, Profile
from stream.ranking.group import rank_group

if TYPE_CHECKING:
    from stream.runtime.app import StreamApp

__all__ = ["MAX_GROUP", "PEER_HEADER", "ROUTES", "register"]

#: Every route the server answers, with the scope it needs (None: none).
ROUTES: dict[tuple[str, str], str | None] = {
    ("GET", "/health"): None,
    ("GET", "/metrics"): None,
    ("GET", "/viewers/{viewer}/recommendations"): "read",
    ("GET", "/viewers/{viewer}/profile"): "profile",
    ("GET", "/groups/recommendations"): "read",
    ("POST", "/viewers/{viewer}/commands"): "commands",
    ("GET", "/peers/viewers/{viewer}/taste"): "peer",
}
#: Viewers a group list takes at most.
MAX_GROUP = 16
PEER_HEADER = "X-Stream-Peer"
#: What the transparency view shows of the strongest genres and tags.
STRONGEST = 5

#: An answer: status, body (a JSON document, or bytes already JSON), extra headers.
Reply = tuple[int, Any, dict[str, str] | None]


def register(stream_app: StreamApp) -> None:
    """Add the API's views to ``stream_app.app``."""
    app = stream_app.app
    api = _Api(stream_app)

    class Recommendations(faust.web.View):
        async def get(self, request: Any, viewer: str) -> Any:
            route = "/viewers/{viewer}/recommendations"
            return await api.for_viewer(self, request, viewer, route, partial(api.recommendations, request))

    class ViewerProfile(faust.web.View):
        async def get(self, request: Any, viewer: str) -> Any:
            return await api.for_viewer(self, request, viewer, "/viewers/{viewer}/profile", api.profile)

    class Group(faust.web.View):
        async def get(self, request: Any) -> Any:
            return api.respond(self, "/groups/recommendations", await api.group(request))

    class Commands(faust.web.View):
        async def post(self, request: Any, viewer: str) -> Any:
            return api.respond(self, "/viewers/{viewer}/commands", await stream_app.post_command(request, viewer))

    class Taste(faust.web.View):
        async def get(self, request: Any, viewer: str) -> Any:
            return api.respond(self, "/peers/viewers/{viewer}/taste", api.taste(request, viewer))

    app.page("/viewers/{viewer}/recommendations")(Recommendations)
    app.page("/viewers/{viewer}/profile")(ViewerProfile)
    app.page("/groups/recommendations")(Group)
    app.page("/viewers/{viewer}/commands")(Commands)
    app.page("/peers/viewers/{viewer}/taste")(Taste)


class _Api:
    def __init__(self, stream_app: StreamApp) -> None:
        self.s = stream_app

    def respond(self, view: Any, route: str, reply: Reply) -> Any:
        status, body, headers = reply
        self.s.metrics.http.labels(route=route, status=str(status)).inc()
        if isinstance(body, bytes):
            return view.bytes(body, content_type="application/json", status=status, headers=headers)
        return view.json(body, status=status, headers=headers)

    async def for_viewer(
        self, view: Any, request: Any, viewer: str, route: str, answer: Callable[[str], Awaitable[Reply]]
    ) -> Any:
        """Authorize, then answer if this worker holds the viewer's partition, else forward to its owner."""
        refused = self.s.authorize(request.headers.get("Authorization"), _SCOPES[route] or "admin")
        if refused is not None:
            return self.respond(view, route, refused)
        try:
            forwarded = await self.s.app.router.route_req(self.s.profiles.name, viewer.encode(), view.web, request)
        except SameNode:
            return self.respond(view, route, await answer(viewer))
        except (ServiceUnavailable, KeyError):
            return self.respond(view, route, _unavailable())
        self.s.metrics.http.labels(route=route, status=str(forwarded.status)).inc()
        return forwarded

    async def recommendations(self, request: Any, viewer: str) -> Reply:
        """The latest snapshot; with ``fresh=true``, a list made now (at ``at``, epoch ms, if given)."""
        fresh = request.query.get("fresh", "false").lower()
        if fresh not in ("true", "false"):
            return 400, {"error": f"fresh: expected true or false; got {fresh!r}"}, None
        if fresh == "false":
            snapshot = self.s.snapshots.data.get(viewer.encode())
            if snapshot is None:
                return _not_found(viewer, "no snapshot: nothing of this viewer was applied, or it was forgotten")
            return 200, snapshot, None
        try:
            at = int(request.query.get("at", time.time() * 1000))
        except ValueError:
            return 400, {"error": f"at: expected epoch milliseconds; got {request.query.get('at')!r}"}, None
        row = self.s.profiles.data.get(viewer.encode())
        if row is None:
            return _not_found(viewer, "nothing is held about this viewer")
        model = self.s.model_of_viewer(viewer)
        return 200, self.s.processor.read_list(row, model, at), None

    async def profile(self, viewer: str) -> Reply:
        raw = self.s.profiles.data.get(viewer.encode())
        if raw is None:
            return _not_found(viewer, "nothing is held about this viewer")
        return 200, self.transparency(Profile.loads(raw)), None

    def transparency(self, p: Profile) -> dict[str, Any]:
        """What is held about one viewer and used for its list, in words and numbers; nobody else's data."""
        catalog = self.s.catalog
        total_dayparts = sum(p.dayparts) or 1.0

        def title(item_id: str) -> str | None:
            idx = catalog.index_of(item_id)
            return catalog.entry(idx).title if idx is not None else None

        strongest = sorted(p.genres.items(), key=lambda kv: -kv[1])[:STRONGEST]
        tags = sorted(p.tags.items(), key=lambda kv: -kv[1])[:STRONGEST]
        cohort = self.s.model_of_viewer(p.user_id).cohort_of(p.user_id, p.genres) if p.personalised else None
        return {
            "user_id": p.user_id,
            "personalised": p.personalised,
            "summary": _summary(p, strongest),
            "events_applied": p.applied,
            "lists_made": p.version,
            "preferences": {"likes": p.likes, "dislikes": p.dislikes},
            "strongest_genres": [{"genre": g, "affinity": round(v, 3)} for g, v in strongest],
            "strongest_tags": [{"tag": t, "affinity": round(v, 3)} for t, v in tags],
            "habits": {
                "current_device": p.device,
                "devices": {d: round(v, 2) for d, v in sorted(p.devices.items(), key=lambda kv: -kv[1])},
                "dayparts": {name: round(v / total_dayparts, 3) for name, v in zip(DAYPARTS, p.dayparts, strict=True)},
                "starts": round(p.starts, 2),
                "finishes": round(p.finishes, 2),
                "early_skips": round(p.early_skips, 2),
            },
            "cohort": cohort,
            "recent_history": [
                {"item_id": i, "title": title(i), "signal": round(v, 3), "finished": bool(f)}
                for i, v, f in reversed(p.history)
            ],
            "never_shown_again": [{"item_id": i, "title": title(i)} for i in p.excluded],
            "paused": p.paused,
        }

    async def group(self, request: Any) -> Reply:
        refused = self.s.authorize(request.headers.get("Authorization"), "read")
        if refused is not None:
            return refused
        names = [v for v in dict.fromkeys(request.query.get("viewers", "").split(",")) if v]
        if not 2 <= len(names) <= MAX_GROUP:
            return 400, {"error": f"viewers: expected 2 to {MAX_GROUP} viewer ids, comma-separated"}, None
        members: list[Profile] = []
        for name in names:
            member = await self._member(request, name)
            if member is None:
                return _not_found(name, "no such viewer in this group")
            members.append(member)
        s = self.s
        items = rank_group(members, s.catalog, self._any_model(), s.settings.top_k, int(time.time() * 1000))
        return 200, {"viewers": names, "items": [i.as_dict() for i in items]}, None

    async def _member(self, request: Any, viewer: str) -> Profile | None:
        """A group member's profile as the group list may use it: from this worker, or from its owner."""
        raw = self.s.profiles.data.get(viewer.encode())
        if raw is not None:
            return _usable(Profile.loads(raw))
        try:
            url = self.s.app.router.key_store(self.s.profiles.name, viewer.encode())
        except KeyError:
            return None
        own = self.s.app.conf.canonical_url
        if (url.host, url.port) == (own.host, own.port):
            return None  # this worker owns it and holds nothing
        proof = self.s.tokens.peer_proof(viewer)
        if proof is None:
            return None
        async with self.s.app.http_client.get(
            url.with_path(f"/peers/viewers/{viewer}/taste"), headers={PEER_HEADER: proof}
        ) as response:
            if response.status != 200:
                return None
            return Profile.loads(await response.read())

    def taste(self, request: Any, viewer: str) -> Reply:
        """For a peer: what a group list uses of a viewer this worker holds (its profile, as a list may use it)."""
        if not self.s.tokens.is_peer(request.headers.get(PEER_HEADER), viewer):
            return 401, {"error": f"{PEER_HEADER}: expected a peer worker's proof"}, None
        raw = self.s.profiles.data.get(viewer.encode())
        if raw is None:
            return _not_found(viewer, "nothing is held about this viewer")
        return 200, _usable(Profile.loads(raw)).dumps(), None

    def _any_model(self) -> PartitionModel:
        models = self.s._partition_models
        if models:
            return next(iter(models.values()))
        model = PartitionModel()
        model.shared = self.s.shared
        return model


_SCOPES = {path: scope for (_, path), scope in ROUTES.items()}


def _usable(profile: Profile) -> Profile:
    """A profile as lists may use it: whole, or, with personalisation off, its stated preferences only."""
    return profile if profile.personalised else profile.impersonal(profile.trigger)


def _not_found(viewer: str, why: str) -> Reply:
    return 404, {"error": f"viewer {viewer!r}: {why}"}, None


def _unavailable() -> Reply:
    return 503, {"error": "the viewer's partition has no owner yet (the group is rebalancing); retry"}, None


def _summary(p: Profile, strongest: list[tuple[str, float]]) -> str:
    if not p.personalised:
        return "Personalisation is off: nothing is learned from your viewing, and your lists use none of it."
    liked = [g for g, v in strongest if v > 0][:3]
    parts = [f"{p.applied} of your viewing events shaped your list"]
    if liked:
        parts.append("you watch most " + ", ".join(liked))
    if p.dislikes:
        parts.append("never shown: " + ", ".join(p.dislikes))
    if p.likes:
        parts.append("more of: " + ", ".join(p.likes))
    return "; ".join(parts) + "."
