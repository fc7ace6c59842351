"""A synthetic listening world with ground truth, for demos and evaluation.

:class:`World` draws users with latent tastes and a catalog of tracks, then
simulates listening sessions as a time-ordered stream of
:class:`~stream.models.Interaction`. It aims to look like real listening logs —
Zipf-like popularity, sessions at each user's usual hours, heavy repeat
listening, trending new releases, skips that depend on taste and a little on
context — while keeping the truth (:meth:`World.affinity`) at hand, so that a
recommender can be scored against an oracle.

Everything is pure and deterministic given ``WorldConfig.seed``: no I/O, no
Kafka, no wall clock.

>>> world = World.generate(WorldConfig(n_users=50, n_items=200, seed=7))
>>> len(world.catalog), world.catalog[0].item_id, world.users[0].user_id
(200, 't-00000', 'u-00000')
>>> events = list(world.events(300))
>>> len(events), all(a.timestamp <= b.timestamp for a, b in zip(events, events[1:]))
(300, True)
>>> again = list(World.generate(WorldConfig(n_users=50, n_items=200, seed=7)).events(300))
>>> again == events
True
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

import numpy as np

from stream.models import CatalogItem, EventType, Interaction, Source

__all__ = ["DAY", "GENRE_NAMES", "HOUR", "UserProfile", "World", "WorldConfig"]

DAY: Final = 86_400.0
HOUR: Final = 3_600.0
_MS_PER_DAY: Final = 86_400_000
_MS_PER_HOUR: Final = 3_600_000

#: Readable genre names, grouped by family (neighbouring families share listeners).
_GENRE_FAMILIES: Final[tuple[tuple[str, ...], ...]] = (
    ("rock", "indie", "metal", "punk", "grunge", "shoegaze"),
    ("pop", "k-pop", "disco", "latin", "reggaeton"),
    ("hip-hop", "r&b", "trap", "soul", "funk", "afrobeats"),
    ("electronic", "ambient", "house", "techno", "drum and bass", "lo-fi"),
    ("jazz", "blues", "classical", "bossa nova", "gospel"),
    ("folk", "country", "reggae", "singer-songwriter", "bluegrass"),
)
#: Interleaved so that the first ``n_genres`` names cover every family.
GENRE_NAMES: Final[tuple[str, ...]] = tuple(
    family[rank]
    for rank in range(max(len(f) for f in _GENRE_FAMILIES))
    for family in _GENRE_FAMILIES
    if rank < len(family)
)
_GENRE_FAMILY: Final[dict[str, int]] = {
    name: index for index, family in enumerate(_GENRE_FAMILIES) for name in family
}
#: Long-form genres are played longer.
_LONG_GENRES: Final = frozenset({"classical", "ambient", "jazz", "techno", "drum and bass"})

_DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

#: Standard-time UTC offsets (hours) for the default countries, so listening hours are local.
_UTC_OFFSET_HOURS: Final[dict[str, int]] = {
    "US": -5, "GB": 0, "DE": 1, "FR": 1, "BR": -3, "MX": -6, "SE": 1, "JP": 9, "IN": 5,
    "ES": 1, "NL": 1, "CA": -5, "AU": 10, "PL": 1, "KR": 9,
}  # fmt: skip

#: Skip-rate shifts (logit) by device: lean-back devices are skipped less.
_DEVICE_SKIP_SHIFT: Final[dict[str, float]] = {
    "mobile": 0.35, "desktop": 0.0, "speaker": -0.45, "car": -0.3, "tv": -0.25, "web": 0.15,
}  # fmt: skip

_ADJECTIVES: Final = (
    "Northern", "Silver", "Golden", "Electric", "Quiet", "Broken", "Endless", "Velvet",
    "Midnight", "Crimson", "Hollow", "Neon", "Paper", "Wild", "Distant", "Burning", "Frozen",
    "Gentle", "Restless", "Lonely", "Sunny", "Blue", "Secret", "Little", "Heavy", "Falling",
    "Summer", "Winter", "Amber", "Static", "Lucky", "Sacred", "Faded", "Crystal", "Stray",
)  # fmt: skip
_NOUNS: Final = (
    "Lights", "River", "Heart", "Drive", "Dreams", "Road", "Ocean", "Fire", "Rain", "City",
    "Moon", "Echo", "Garden", "Signal", "Shadows", "Horizon", "Waves", "Mirror", "Stars",
    "Highway", "Thunder", "Bloom", "Skyline", "Harbor", "Letters", "Orbit", "Meadow", "Ghost",
    "Parade", "Tides", "Engine", "Window", "Satellite", "Lanterns", "Avenue",
)  # fmt: skip
_FIRST_NAMES: Final = (
    "Ada", "Leo", "Mira", "Jonas", "Nina", "Omar", "Yuki", "Sofia", "Malik", "Ines", "Theo",
    "Lena", "Kofi", "Maya", "Ravi", "Elsa", "Diego", "Hana", "Felix", "Zara",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Fields", "Rivers", "Stone", "Vega", "Lind", "Okafor", "Moreau", "Tanaka", "Reyes",
    "Novak", "Hale", "Adeyemi", "Berg", "Costa", "Sato", "Ward", "Kim", "Silva", "Young",
)  # fmt: skip

_TYPES: Final = (EventType.PLAY, EventType.SKIP, EventType.REPLAY)
_PLAY, _SKIP, _REPLAY = 0, 1, 2

#: A simulated event before it becomes an Interaction:
#: (ended_at_ms, sequence, user index, item index, type code, ms_played, device index).
#: Sorting these sorts by time, ties in the order they were simulated.
_Record = tuple[int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Hyperparameters of a synthetic world. The defaults give a realistic mid-size world.

    Parameters
    ----------
    n_users, n_items
        How many listeners and tracks.
    n_artists
        How many artists; ``None`` means ``n_items // 8`` (at least 1).
    n_genres
        How many genres, taken from :data:`GENRE_NAMES` (at most its length).
    n_factors
        Dimension of the latent taste vectors.
    popularity_exponent
        Zipf exponent of the items' base popularity (rank ``r`` gets ``r ** -exponent``).
    new_release_fraction
        Share of the catalog released during the simulated period, spread over the
        ``release_window_days`` after ``start``; the rest is back catalog released
        over the ``catalog_years`` before ``start``.
    start
        Epoch seconds (UTC) where the simulation starts; default 2026-01-01T00:00Z.
    devices, countries
        Context values. Countries must be ISO 3166-1 alpha-2 codes.
    sessions_per_user_per_day
        Mean number of sessions a user starts per day; individual activity is
        log-normal around it (a heavy tail of very active users).
    mean_session_tracks, max_session_tracks
        Picks per session: geometric with this mean, capped.
    repeat_probability
        Mean chance that a pick repeats one of the user's recent positively played
        tracks (individual propensities vary around it).
    explore_probability
        Chance that a pick is a random released track, regardless of taste.
    taste_sharpness
        How strongly affinity steers the non-repeat picks (weight ``exp(sharpness * logit)``).
    mainstream_range
        Each user follows popularity to a personal degree drawn from this range: a
        non-repeat pick is weighted by ``popularity ** mainstream``.
    favourite_artists, favourite_artist_bonus
        Mean number of favourite artists per user, and how much (logit) their
        tracks gain in affinity.
    skip_intercept, skip_slope
        Skip model: ``P(skip) = sigmoid(skip_intercept - skip_slope * logit + context)``.
    replay_probability
        Chance that a fully played, perfectly matched track is replayed right away.
    new_release_boost, new_release_days
        New releases get attention: their popularity is multiplied by up to
        ``1 + new_release_boost``, decaying with a time constant of ``new_release_days``.
    burst_fraction, burst_boost, burst_days, trend_probability
        Share of new releases that trend. A trending hit's popularity is multiplied
        by up to ``1 + burst_boost`` more, and while hits are hot up to
        ``trend_probability`` of all picks go to them whatever the listener's taste
        (viral plays, radio); both decay with a time constant of ``burst_days``.
    history_size
        How many recent positive plays a user draws repeats from.
    seed
        Everything is deterministic given the seed.
    """

    n_users: int = 2000
    n_items: int = 5000
    n_artists: int | None = None
    n_genres: int = 20
    n_factors: int = 16
    popularity_exponent: float = 1.0
    new_release_fraction: float = 0.08
    release_window_days: float = 60.0
    catalog_years: float = 8.0
    start: float = _DEFAULT_START
    devices: tuple[str, ...] = ("mobile", "desktop", "speaker", "car", "tv", "web")
    countries: tuple[str, ...] = tuple(_UTC_OFFSET_HOURS)
    sessions_per_user_per_day: float = 0.8
    mean_session_tracks: float = 12.0
    max_session_tracks: int = 80
    repeat_probability: float = 0.45
    explore_probability: float = 0.08
    taste_sharpness: float = 2.0
    mainstream_range: tuple[float, float] = (0.5, 1.0)
    favourite_artists: float = 6.0
    favourite_artist_bonus: float = 1.5
    skip_intercept: float = 0.3
    skip_slope: float = 0.9
    replay_probability: float = 0.08
    new_release_boost: float = 15.0
    new_release_days: float = 21.0
    burst_fraction: float = 0.2
    burst_boost: float = 20.0
    burst_days: float = 3.0
    trend_probability: float = 0.04
    history_size: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_items < 1:
            raise ValueError("a world needs at least one user and one item")
        if not 1 <= self.n_genres <= len(GENRE_NAMES):
            raise ValueError(f"n_genres must be between 1 and {len(GENRE_NAMES)}")
        if not self.devices or not self.countries:
            raise ValueError("devices and countries must not be empty")
        if not all(len(c) == 2 and c.isascii() and c.isupper() for c in self.countries):
            raise ValueError("countries must be ISO 3166-1 alpha-2 codes such as 'GB'")
        if not all(1 <= len(d) <= 32 for d in self.devices):
            raise ValueError("device names must have 1 to 32 characters")
        if not 0.0 <= self.new_release_fraction <= 1.0:
            raise ValueError("new_release_fraction must be in [0, 1]")
        if self.repeat_probability + self.explore_probability + self.trend_probability > 1.0:
            raise ValueError(
                "repeat_probability + explore_probability + trend_probability must be at most 1"
            )

    @property
    def artist_count(self) -> int:
        """``n_artists``, or its default ``n_items // 8``."""
        if self.n_artists is not None:
            return max(1, min(self.n_artists, self.n_items))
        return max(1, self.n_items // 8)


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What the world knows about a listener (ground truth, never sent on the wire).

    ``genres`` are the preferred genres, strongest first; ``peak_hour`` is the local
    hour they listen most; ``activity`` their mean sessions per day; ``mainstream``
    how much their new picks follow popularity (``popularity ** mainstream``);
    ``repeat_propensity`` the chance a pick replays a recent favourite.
    """

    user_id: str
    genres: tuple[str, ...]
    device: str
    country: str
    activity: float
    peak_hour: float
    mainstream: float
    repeat_propensity: float


class _Market(NamedTuple):
    log_popularity: np.ndarray  # -inf before release
    released: np.ndarray  # indices of released items
    trending_cumulative: np.ndarray  # cumulative heat of trending hits
    trending_share: float  # share of picks that go to trending hits


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class World:
    """A synthetic listening world: users, a catalog, and the behaviour linking them.

    Build one with :meth:`World.generate`. The world is stateful while it
    simulates: each user remembers recent positive plays (their favourites), and
    the clock advances; :meth:`events` continues where the previous call stopped.

    Parameters
    ----------
    config
        The hyperparameters; the world is a pure function of them.

    Notes
    -----
    *Taste.* ``affinity = sigmoid(logit)`` with ``logit = user . item + quality +
    user bias - 1 (+ favourite_artist_bonus)``. Item vectors sit near their artist's,
    artists near their main genre's, genres near their family's; a user's vector
    mixes their 1-4 preferred genres, and each user has a few favourite artists.

    *Sessions.* Each hour of simulated time, users start sessions at a rate given
    by their activity and their (local) listening hours, on their usual device most
    of the time. Each pick in a session is one of:

    1. a repeat: uniform over the user's last ``history_size`` positive plays (so
       frequency- and recency-weighted); a skip removes one copy;
    2. taste x popularity: ``popularity ** mainstream * exp(taste_sharpness * logit)``
       over released items (popularity includes new-release boosts and bursts);
    3. a trending hit (while some are hot), whatever the taste;
    4. exploration: any released item.

    *Outcome.* ``P(skip) = sigmoid(skip_intercept - skip_slope * logit + context)``
    where the context shift depends on the device (mobile up, speaker/car down) and
    the local hour (morning commute up, late night down). Skips end early (earlier
    for poor matches); plays run to the end (15% stop after 60-100%); a full play
    of a strong match is sometimes replayed at once (a ``replay`` event).

    Examples
    --------
    >>> world = World.generate(WorldConfig(n_users=20, n_items=100, seed=1))
    >>> first = next(world.events(1))
    >>> first.user_id.startswith("u-"), first.item_id.startswith("t-"), first.event_id
    (True, True, 'sim1-000000000')
    >>> 0.0 < world.affinity(first.user_id, first.item_id) < 1.0
    True
    """

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        world_seed, events_seed, respond_seed = np.random.SeedSequence(config.seed).spawn(3)
        self._build(np.random.default_rng(world_seed))
        # Separate streams: responses to recommendations do not reshuffle background traffic.
        self._rng = np.random.default_rng(events_seed)
        self._respond_rng = np.random.default_rng(respond_seed)
        self._clock_ms = int(round(config.start * 1000))
        self._pending: list[_Record] = []
        self._ready: collections.deque[_Record] = collections.deque()
        self._busy_until_ms = np.zeros(config.n_users, dtype=np.int64)
        self._history: list[list[int]] = [[] for _ in range(config.n_users)]
        self._sequence = 0
        self._emitted = 0
        self._responses = 0

    @classmethod
    def generate(cls, config: WorldConfig | None = None) -> World:
        """Draw a new world from ``config`` (the defaults when ``None``).

        >>> World.generate(WorldConfig(n_users=3, n_items=10)).config.n_users
        3
        """
        return cls(config if config is not None else WorldConfig())

    # ------------------------------------------------------------------ building

    def _build(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n_genres, n_factors, n_items = cfg.n_genres, cfg.n_factors, cfg.n_items
        n_artists = cfg.artist_count
        self.genres: tuple[str, ...] = GENRE_NAMES[:n_genres]

        # Genres of one family share a direction, so tastes spill over to neighbours.
        n_families = len(_GENRE_FAMILIES)
        family_vectors = rng.normal(size=(n_families, n_factors))
        family_of_genre = np.array([_GENRE_FAMILY[g] for g in self.genres])
        genre_vectors = _unit_rows(
            0.7 * _unit_rows(family_vectors)[family_of_genre]
            + 0.7 * _unit_rows(rng.normal(size=(n_genres, n_factors)))
        )
        # Some genres have many more listeners than others.
        genre_share = 1.0 / np.arange(1, n_genres + 1) ** 0.7
        genre_share = rng.permutation(genre_share / genre_share.sum())
        self._genre_share = genre_share

        # Artists: a main genre, sometimes a second one, a style and a Zipf-like reach.
        artist_genre = rng.choice(n_genres, size=n_artists, p=genre_share)
        artist_vectors = _unit_rows(
            genre_vectors[artist_genre] + 0.55 * _unit_rows(rng.normal(size=(n_artists, n_factors)))
        )
        artist_reach = rng.normal(scale=1.0, size=n_artists)
        artist_names = self._artist_names(rng, n_artists)

        # Items: each belongs to an artist (every artist gets at least one track).
        # Artists with a wider reach have released more tracks.
        prolific = np.exp(0.5 * artist_reach)
        extra_tracks = rng.choice(n_artists, size=n_items - n_artists, p=prolific / prolific.sum())
        item_artist = rng.permutation(np.concatenate([np.arange(n_artists), extra_tracks]))
        item_genre_lists = self._item_genres(rng, artist_genre[item_artist], family_of_genre)
        second_genre_vector = np.array(
            [
                genre_vectors[list(genres[1:])].mean(axis=0)
                if len(genres) > 1
                else np.zeros(n_factors)
                for genres in item_genre_lists
            ]
        )
        item_vectors = _unit_rows(
            artist_vectors[item_artist]
            + 0.3 * second_genre_vector
            + 0.45 * _unit_rows(rng.normal(size=(n_items, n_factors)))
        )
        quality = rng.normal(scale=0.4, size=n_items)

        # Base popularity: Zipf over a ranking driven by the artist's reach and quality.
        rank_score = artist_reach[item_artist] + quality + rng.normal(scale=0.7, size=n_items)
        ranks = np.empty(n_items, dtype=np.int64)
        ranks[np.argsort(-rank_score)] = np.arange(1, n_items + 1)
        base_popularity = ranks.astype(float) ** -cfg.popularity_exponent
        base_popularity /= base_popularity.sum()

        # Release dates at midnight UTC, so they survive the wire format's date field.
        start_day_ms = (int(round(cfg.start * 1000)) // _MS_PER_DAY) * _MS_PER_DAY
        is_new = rng.random(n_items) < cfg.new_release_fraction
        back_days = 1 + np.floor(rng.beta(1.0, 1.8, size=n_items) * cfg.catalog_years * 365.25)
        new_days = np.floor(rng.random(n_items) * cfg.release_window_days)
        release_ms = np.where(
            is_new, start_day_ms + new_days * _MS_PER_DAY, start_day_ms - back_days * _MS_PER_DAY
        ).astype(np.int64)
        self._is_new = is_new
        self._is_hit = is_new & (rng.random(n_items) < cfg.burst_fraction)

        # Durations: log-normal around 3.6 min, longer for long-form genres, 2-7 min.
        long_form = np.array([genres[0] in _LONG_GENRES for genres in item_genre_lists])
        durations = np.exp(rng.normal(np.log(215_000), 0.22, size=n_items)) * np.where(
            long_form, 1.3, 1.0
        )
        durations_ms = np.clip(durations, 120_000, 420_000).astype(np.int64)

        titles = self._titles(rng, n_items)
        self._item_ids = [f"t-{i:05d}" for i in range(n_items)]
        self._item_index = {item_id: i for i, item_id in enumerate(self._item_ids)}
        self.catalog: tuple[CatalogItem, ...] = tuple(
            CatalogItem(
                item_id=self._item_ids[i],
                title=titles[i],
                artist=artist_names[item_artist[i]],
                genres=tuple(self.genres[g] for g in item_genre_lists[i]),
                duration_ms=int(durations_ms[i]),
                released_at=release_ms[i] / 1000,
            )
            for i in range(n_items)
        )
        self._durations_ms = durations_ms
        self._durations = [int(d) for d in durations_ms]
        self._release_ms = release_ms
        self._base_log_popularity = np.log(base_popularity)
        self._item_vectors = item_vectors
        self._quality = quality

        self._item_artist = item_artist
        self._build_users(rng, genre_vectors, genre_share)
        self._pick_favourite_artists(rng, artist_vectors, artist_reach)

    def _build_users(
        self, rng: np.random.Generator, genre_vectors: np.ndarray, genre_share: np.ndarray
    ) -> None:
        cfg = self.config
        n_users, n_genres = cfg.n_users, cfg.n_genres
        users = []
        user_vectors = np.empty((n_users, cfg.n_factors))
        taste_scale = np.empty(n_users)
        mainstream = rng.uniform(*cfg.mainstream_range, size=n_users)
        repeat = np.clip(
            rng.beta(4.0, 4.0, size=n_users) * 2 * cfg.repeat_probability,
            0.0,
            1.0 - cfg.explore_probability - cfg.trend_probability,
        )
        # Log-normal activity with the configured mean: a heavy tail of very active users.
        sigma = 1.0
        activity = rng.lognormal(
            np.log(cfg.sessions_per_user_per_day) - sigma**2 / 2, sigma, n_users
        )
        # Peak listening hours (local): commute, lunch, evening, late night.
        peak_centres = np.array([8.0, 13.0, 19.5, 22.5, 1.0])
        peak = (
            rng.choice(peak_centres, size=n_users, p=[0.2, 0.15, 0.35, 0.2, 0.1])
            + rng.normal(scale=1.0, size=n_users)
        ) % 24
        spread = rng.uniform(1.5, 3.5, size=n_users)
        device_weights = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.07])[: len(cfg.devices)]
        if len(device_weights) < len(cfg.devices):
            device_weights = np.ones(len(cfg.devices))
        device_weights = device_weights / device_weights.sum()
        usual_device = rng.choice(len(cfg.devices), size=n_users, p=device_weights)
        country_weights = 1.0 / np.arange(1, len(cfg.countries) + 1) ** 0.8
        country = rng.choice(
            len(cfg.countries), size=n_users, p=country_weights / country_weights.sum()
        )

        hours = np.arange(24) + 0.5
        hour_profile = np.empty((24, n_users))
        for u in range(n_users):
            n_liked = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.35, 0.25, 0.15]))
            liked = rng.choice(n_genres, size=min(n_liked, n_genres), replace=False, p=genre_share)
            weights = np.sort(rng.dirichlet(np.ones(len(liked)) * 2.0))[::-1]
            vector = weights @ genre_vectors[liked] + 0.35 * rng.normal(
                size=cfg.n_factors
            ) / np.sqrt(cfg.n_factors)
            user_vectors[u] = vector / max(np.linalg.norm(vector), 1e-12)
            # Eclectic listeners (many genres) have flatter tastes.
            taste_scale[u] = rng.uniform(3.0, 4.5) / np.sqrt(n_liked) ** 0.5
            offset = _UTC_OFFSET_HOURS.get(cfg.countries[country[u]], 0)
            local = (hours + offset) % 24
            distance = np.minimum(np.abs(local - peak[u]), 24 - np.abs(local - peak[u]))
            profile = 0.15 / 24 + 0.85 * np.exp(-0.5 * (distance / spread[u]) ** 2)
            hour_profile[:, u] = profile / profile.sum()
            users.append(
                UserProfile(
                    user_id=f"u-{u:05d}",
                    genres=tuple(self.genres[g] for g in liked),
                    device=cfg.devices[usual_device[u]],
                    country=cfg.countries[country[u]],
                    activity=float(activity[u]),
                    peak_hour=float(peak[u]),
                    mainstream=float(mainstream[u]),
                    repeat_propensity=float(repeat[u]),
                )
            )
        self.users: tuple[UserProfile, ...] = tuple(users)
        self._user_ids = [user.user_id for user in users]
        self._user_index = {user_id: u for u, user_id in enumerate(self._user_ids)}
        self._user_vectors = user_vectors * taste_scale[:, None]
        self._user_bias = rng.normal(scale=0.3, size=n_users)
        self._mainstream = mainstream
        self._repeat = repeat
        self._usual_device = usual_device
        self._country_names = [cfg.countries[c] for c in country]
        self._utc_offset_h = np.array(
            [_UTC_OFFSET_HOURS.get(cfg.countries[c], 0) for c in country], dtype=np.int64
        )
        # Expected sessions per UTC hour, as cumulative weights to draw users from.
        session_rate = hour_profile * activity[None, :]
        self._hour_rate = session_rate.sum(axis=1)
        self._hour_cumulative = np.cumsum(session_rate, axis=1)
        self._device_skip_shift = np.array([_DEVICE_SKIP_SHIFT.get(d, 0.0) for d in cfg.devices])
        self._device_weights = device_weights

    def _pick_favourite_artists(
        self, rng: np.random.Generator, artist_vectors: np.ndarray, artist_reach: np.ndarray
    ) -> None:
        """Music taste is as much about artists as genres: each user has a few
        favourite artists, close to their taste and more often well known."""
        cfg = self.config
        n_artists = len(artist_vectors)
        directions = _unit_rows(self._user_vectors)
        tracks_of_artist = [[] for _ in range(n_artists)]
        for item, artist in enumerate(self._item_artist.tolist()):
            tracks_of_artist[artist].append(item)
        self._favourites: list[frozenset[int]] = []
        self._favourite_items: list[np.ndarray] = []
        for u in range(cfg.n_users):
            count = min(n_artists, 1 + int(rng.poisson(max(cfg.favourite_artists - 1, 0))))
            closeness = 5.0 * (artist_vectors @ directions[u]) + 0.5 * artist_reach
            weights = np.exp(closeness - closeness.max())
            chosen = rng.choice(n_artists, size=count, replace=False, p=weights / weights.sum())
            self._favourites.append(frozenset(chosen.tolist()))
            items = [item for artist in chosen.tolist() for item in tracks_of_artist[artist]]
            self._favourite_items.append(np.array(items, dtype=np.int64))

    @staticmethod
    def _artist_names(rng: np.random.Generator, count: int) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        for _ in range(count):
            style = rng.random()
            if style < 0.35:
                name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            elif style < 0.6:
                name = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
            else:
                name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
            unique, suffix = name, 2
            while unique in seen:  # real artists with clashing names add a marker too
                unique, suffix = f"{name} {_roman(suffix)}", suffix + 1
            seen.add(unique)
            names.append(unique)
        return names

    @staticmethod
    def _titles(rng: np.random.Generator, count: int) -> list[str]:
        adjectives = rng.choice(_ADJECTIVES, size=count)
        nouns = rng.choice(_NOUNS, size=count)
        others = rng.choice(_NOUNS, size=count)
        style = rng.random(count)
        titles = []
        for adjective, noun, other, s in zip(adjectives, nouns, others, style, strict=True):
            if s < 0.55:
                titles.append(f"{adjective} {noun}")
            elif s < 0.75:
                titles.append(f"{noun} of {other}" if noun != other else f"{noun} Again")
            elif s < 0.9:
                titles.append(str(noun))
            else:
                titles.append(f"{adjective} {noun} (Remix)")
        return titles

    def _item_genres(
        self, rng: np.random.Generator, main_genre: np.ndarray, family_of_genre: np.ndarray
    ) -> list[tuple[int, ...]]:
        n_genres = len(self.genres)
        extra_count = rng.choice([0, 1, 2], size=len(main_genre), p=[0.55, 0.33, 0.12])
        lists = []
        for main, extra in zip(main_genre.tolist(), extra_count.tolist(), strict=True):
            genres = [main]
            same_family = np.flatnonzero(family_of_genre == family_of_genre[main])
            for _ in range(extra):
                pool = same_family if rng.random() < 0.75 else np.arange(n_genres)
                pool = pool[~np.isin(pool, genres)]
                if pool.size:
                    genres.append(int(rng.choice(pool)))
            lists.append(tuple(genres))
        return lists

    # ------------------------------------------------------------------ truth

    @property
    def user_ids(self) -> list[str]:
        """User ids in index order (``u-00000`` ...)."""
        return list(self._user_ids)

    @property
    def item_ids(self) -> list[str]:
        """Item ids in catalog order (``t-00000`` ...)."""
        return list(self._item_ids)

    @property
    def trending_hits(self) -> tuple[str, ...]:
        """New releases that burst right after their release (ground truth for Trending)."""
        return tuple(self._item_ids[i] for i in np.flatnonzero(self._is_hit).tolist())

    @property
    def now(self) -> float:
        """Where the simulation clock stands (epoch seconds): the next window starts here."""
        return self._clock_ms / 1000

    def _user(self, user_id: str) -> int:
        try:
            return self._user_index[user_id]
        except KeyError:
            raise KeyError(f"unknown user {user_id!r}") from None

    def _item(self, item_id: str) -> int:
        try:
            return self._item_index[item_id]
        except KeyError:
            raise KeyError(f"unknown item {item_id!r}") from None

    def _logits(self, u: int) -> np.ndarray:
        logits = (
            self._item_vectors @ self._user_vectors[u] + self._quality + (self._user_bias[u] - 1.0)
        )
        logits[self._favourite_items[u]] += self.config.favourite_artist_bonus
        return logits

    def affinity(self, user_id: str, item_id: str) -> float:
        """Ground-truth affinity in (0, 1): how much ``user_id`` likes ``item_id``.

        It is the chance the user enjoys the track in a neutral context; skips,
        picks and replays are all driven by it.

        >>> world = World.generate(WorldConfig(n_users=5, n_items=30))
        >>> 0.0 < world.affinity("u-00001", "t-00002") < 1.0
        True
        """
        logit = self._logits_one(self._user(user_id), self._item(item_id))
        return 1.0 / (1.0 + math.exp(-logit))

    def affinities(self, user_id: str) -> np.ndarray:
        """:meth:`affinity` of ``user_id`` for every item, in catalog order.

        >>> world = World.generate(WorldConfig(n_users=5, n_items=30))
        >>> scores = world.affinities("u-00003")
        >>> scores.shape, bool(abs(scores[7] - world.affinity("u-00003", "t-00007")) < 1e-9)
        ((30,), True)
        """
        return _sigmoid(self._logits(self._user(user_id)))

    def popularity(self, at: float) -> np.ndarray:
        """Each item's popularity (sums to 1) at time ``at``; 0 before its release.

        Includes the boost of new releases and the bursts of trending ones.

        >>> world = World.generate(WorldConfig(n_users=5, n_items=50))
        >>> later = world.popularity(world.config.start + 90 * 86_400)
        >>> round(float(later.sum()), 6), bool((later > 0).all())
        (1.0, True)
        """
        weights = np.exp(self._log_popularity(int(round(at * 1000))))
        return weights / weights.sum()

    def oracle_scores(self, user_id: str, at: float) -> np.ndarray:
        """The chance that a new (non-repeat) pick of ``user_id`` at ``at`` is each
        item and is not skipped, in catalog order — the simulator's own pick
        distribution (taste x popularity, trending, exploration) times the chance of
        playing it, before context. Ranking unseen items by it is the oracle upper bound.

        >>> world = World.generate(WorldConfig(n_users=5, n_items=50))
        >>> scores = world.oracle_scores("u-00000", world.config.start)
        >>> scores.shape, bool((scores >= 0).all()), bool(scores.sum() < 1)
        ((50,), True, True)
        """
        cfg = self.config
        u = self._user(user_id)
        logits = self._logits(u)
        market = self._market(int(round(at * 1000)))
        score = self._mainstream[u] * market.log_popularity + cfg.taste_sharpness * logits
        taste_pick = np.exp(score - score[market.released].max())
        taste_pick /= taste_pick.sum()
        explore_pick = np.zeros(cfg.n_items)
        explore_pick[market.released] = 1.0 / market.released.size
        trend_pick = np.diff(market.trending_cumulative, prepend=0.0)
        if market.trending_share > 0:
            trend_pick /= market.trending_cumulative[-1]
        main_share = 1.0 - cfg.explore_probability - market.trending_share
        pick = (
            main_share * taste_pick
            + cfg.explore_probability * explore_pick
            + market.trending_share * trend_pick
        )
        keep = _sigmoid(cfg.skip_slope * logits - cfg.skip_intercept)
        return pick * keep

    def _market(self, at_ms: int) -> _Market:
        """What is on offer at ``at_ms``: popularity, released items and trending hits."""
        cfg = self.config
        log_popularity = self._log_popularity(at_ms)
        released = np.flatnonzero(np.isfinite(log_popularity))
        age_days = (at_ms - self._release_ms) / _MS_PER_DAY
        heat = np.where(
            self._is_hit & (age_days >= 0),
            np.exp(-np.maximum(age_days, 0.0) / cfg.burst_days),
            0.0,
        )
        cumulative = np.cumsum(heat)
        # About one hit at full heat claims the whole trending share of picks.
        share = cfg.trend_probability * min(1.0, float(cumulative[-1]))
        return _Market(log_popularity, released, cumulative, share)

    def _log_popularity(self, at_ms: int) -> np.ndarray:
        cfg = self.config
        age_days = (at_ms - self._release_ms) / _MS_PER_DAY
        released = age_days >= 0
        safe_age = np.where(released, age_days, 0.0)
        # New releases get attention for a couple of weeks; hits burst for a few days.
        boost = np.where(
            self._is_new,
            1.0 + cfg.new_release_boost * np.exp(-safe_age / cfg.new_release_days),
            1.0,
        )
        boost = boost + np.where(
            self._is_hit, cfg.burst_boost * np.exp(-safe_age / cfg.burst_days), 0.0
        )
        return np.where(released, self._base_log_popularity + np.log(boost), -np.inf)

    # ------------------------------------------------------------------ behaviour

    def _skip_probability(
        self,
        logits: np.ndarray,
        device: int | None,
        local_hour: int,
        device_name: str | None = None,
    ) -> np.ndarray:
        cfg = self.config
        if device is not None:
            shift = self._device_skip_shift[device]
        else:
            shift = _DEVICE_SKIP_SHIFT.get(device_name or "", 0.0)
        # Commuters skip more, late-night listeners less.
        if 6 <= local_hour < 10:
            shift += 0.3
        elif local_hour >= 23 or local_hour < 4:
            shift -= 0.3
        return _sigmoid(cfg.skip_intercept - cfg.skip_slope * logits + shift)

    def _session_device(self, u: int, rng: np.random.Generator) -> int:
        if rng.random() < 0.8:
            return int(self._usual_device[u])
        return int(rng.choice(len(self.config.devices), p=self._device_weights))

    def _advance_window(self) -> None:
        """Simulate the sessions starting in the next hour, and release the events that
        are now final (earlier than any session still to start)."""
        rng = self._rng
        cfg = self.config
        window_start = self._clock_ms
        window_end = window_start + _MS_PER_HOUR
        hour = (window_start // _MS_PER_HOUR) % 24
        market = self._market(window_start)
        expected = self._hour_rate[hour]  # sessions starting in this hour
        cumulative = self._hour_cumulative[hour]
        n_sessions = int(rng.poisson(expected))
        users = np.searchsorted(cumulative, rng.random(n_sessions) * cumulative[-1], side="right")
        users = np.minimum(users, cfg.n_users - 1)
        starts = window_start + np.sort(rng.integers(0, _MS_PER_HOUR, size=n_sessions))
        fresh: list[_Record] = []
        for u, start in zip(users.tolist(), starts.tolist(), strict=True):
            if self._busy_until_ms[u] > start:
                continue  # already listening: one session at a time
            end = self._session(u, start, market, fresh)
            self._busy_until_ms[u] = end
        pending = self._pending + fresh
        pending.sort()
        split = _bisect_time(pending, window_end)
        self._ready.extend(pending[:split])
        self._pending = pending[split:]
        self._clock_ms = window_end

    def _session(
        self,
        u: int,
        start_ms: int,
        market: _Market,
        out: list[_Record],
    ) -> int:
        rng = self._rng
        cfg = self.config
        n_tracks = min(int(rng.geometric(1.0 / cfg.mean_session_tracks)), cfg.max_session_tracks)
        device = self._session_device(u, rng)
        local_hour = int((start_ms // _MS_PER_HOUR + self._utc_offset_h[u]) % 24)
        history = self._history[u]
        logits = self._logits(u)
        # One draw for all uniforms of the session: mode, pick, skip, partial play,
        # fraction played, replay, gap.
        mode, pick, skip, part, fraction, again, gap = rng.random((7, n_tracks))

        # Which kind of pick: repeat a favourite, taste x popularity, trending, or explore.
        repeat_p = self._repeat[u] if history else 0.0
        explore = mode >= 1.0 - cfg.explore_probability
        trending = ~explore & (mode >= 1.0 - cfg.explore_probability - market.trending_share)
        repeat = mode < repeat_p
        main = ~(explore | trending | repeat)
        picks = np.empty(n_tracks, dtype=np.int64)
        if main.any():
            score = self._mainstream[u] * market.log_popularity
            score += cfg.taste_sharpness * logits
            score -= score.max()  # unreleased items are -inf and get weight 0
            cumulative = np.cumsum(np.exp(score, out=score))
            chosen = np.searchsorted(cumulative, pick[main] * cumulative[-1], side="right")
            picks[main] = np.minimum(chosen, cfg.n_items - 1)
        if trending.any():
            heat = market.trending_cumulative
            chosen = np.searchsorted(heat, pick[trending] * heat[-1], side="right")
            picks[trending] = np.minimum(chosen, cfg.n_items - 1)
        if explore.any():
            released = market.released
            picks[explore] = released[(pick[explore] * released.size).astype(np.int64)]
        if repeat.any():
            # Uniform over recent positive plays = frequency and recency weighted.
            slots = (pick[repeat] * len(history)).astype(np.int64)
            picks[repeat] = [history[s] for s in slots.tolist()]

        picked_logits = logits[picks]
        skipped = skip < self._skip_probability(picked_logits, device, local_hour)
        affinity = _sigmoid(picked_logits)
        durations = self._durations_ms[picks]
        # Poor matches are skipped early; good ones go further before a skip.
        skip_fraction = np.minimum(rng.beta(1.2, 7.0, size=n_tracks) * (0.4 + affinity), 0.9)
        partial = part < 0.15
        play_fraction = np.where(partial, 0.6 + 0.4 * fraction, 1.0)
        ms_played = (np.where(skipped, skip_fraction, play_fraction) * durations).astype(np.int64)
        replay = ~skipped & ~partial & (again < cfg.replay_probability * affinity**3)
        gaps = (200 + 3800 * gap).astype(np.int64)

        now = start_ms
        sequence = self._sequence
        limit = cfg.history_size
        for item, played, was_skipped, replayed, duration, gap in zip(
            picks.tolist(),
            ms_played.tolist(),
            skipped.tolist(),
            replay.tolist(),
            durations.tolist(),
            gaps.tolist(),
            strict=True,
        ):
            now += played
            if was_skipped:
                out.append((now, sequence, u, item, _SKIP, played, device))
                if item in history:
                    history.remove(item)  # a skipped favourite loses its place
            else:
                out.append((now, sequence, u, item, _PLAY, played, device))
                history.append(item)
                if replayed:
                    sequence += 1
                    now += duration + 1000
                    out.append((now, sequence, u, item, _REPLAY, duration, device))
                    history.append(item)
            sequence += 1
            now += gap
        if len(history) > limit:
            del history[: len(history) - limit]
        self._sequence = sequence
        return now

    def events(self, n_events: int, *, start: float | None = None) -> Iterator[Interaction]:
        """A time-ordered stream of ``n_events`` plays, skips and replays.

        Sessions of many users interleave. Timestamps are when each event ended
        (whole milliseconds); ``event_id`` is ``sim<seed>-<n>``, counting across
        calls. Events are generated an hour of simulated time at a time, so memory
        stays bounded however many you ask for.

        Parameters
        ----------
        n_events
            How many events to yield.
        start
            Epoch seconds to (re)start the clock at. ``None`` continues where the
            previous call stopped (``config.start`` the first time); a new start
            discards events simulated but not yet yielded.

        Examples
        --------
        >>> world = World.generate(WorldConfig(n_users=40, n_items=150, seed=3))
        >>> first = list(world.events(100))
        >>> more = list(world.events(100))
        >>> first[-1].timestamp <= more[0].timestamp, more[0].event_id
        (True, 'sim3-000000100')
        >>> {e.type.value for e in first + more} >= {"play", "skip"}
        True
        """
        if n_events < 0:
            raise ValueError("n_events must not be negative")
        if start is not None:
            self._clock_ms = int(round(start * 1000))
            self._pending = []
            self._ready.clear()
            self._busy_until_ms[:] = 0  # the sessions in flight were dropped
        return self._stream(n_events)

    def _stream(self, n_events: int) -> Iterator[Interaction]:
        prefix = f"sim{self.config.seed}-"
        user_ids, item_ids, durations = self._user_ids, self._item_ids, self._durations
        devices, countries = self.config.devices, self._country_names
        ready = self._ready
        produced = 0
        while produced < n_events:
            if not ready:
                self._advance_window()
                continue
            at_ms, _, u, item, kind, played, device = ready.popleft()
            number = self._emitted
            self._emitted = number + 1
            produced += 1
            # Positional arguments: this line runs for every event.
            yield Interaction(
                f"{prefix}{number:09d}",
                user_ids[u],
                item_ids[item],
                _TYPES[kind],
                at_ms / 1000,
                played,
                durations[item],
                devices[device],
                countries[u],
            )

    def respond(
        self,
        user_id: str,
        item_id: str,
        *,
        now: float,
        device: str,
        source: Source | None = None,
    ) -> Interaction:
        """How ``user_id`` reacts to being shown ``item_id`` at ``now``: a play or a skip.

        The same decision model as :meth:`events`, drawn from a random stream of
        its own (so responding does not change background traffic's draws). A play
        makes the item one of the user's favourites, which later sessions repeat.
        The event happens at ``now``; ``event_id`` is ``sim<seed>-r<n>``.

        Examples
        --------
        >>> world = World.generate(WorldConfig(n_users=10, n_items=60, seed=2))
        >>> event = world.respond("u-00004", "t-00009", now=world.config.start, device="mobile")
        >>> event.type.value in {"play", "skip"}, event.event_id, event.duration_ms > 0
        (True, 'sim2-r000000000', True)
        """
        u, i = self._user(user_id), self._item(item_id)
        rng = self._respond_rng
        at_ms = int(round(now * 1000))
        logit = np.array([self._logits_one(u, i)])
        device_index = self.config.devices.index(device) if device in self.config.devices else None
        local_hour = int((at_ms // _MS_PER_HOUR + self._utc_offset_h[u]) % 24)
        skip_p = float(self._skip_probability(logit, device_index, local_hour, device)[0])
        duration = self._durations[i]
        affinity = 1.0 / (1.0 + math.exp(-float(logit[0])))
        history = self._history[u]
        if rng.random() < skip_p:
            kind = EventType.SKIP
            played = int(min(rng.beta(1.2, 7.0) * (0.4 + affinity), 0.9) * duration)
            if i in history:
                history.remove(i)
        else:
            kind = EventType.PLAY
            played = duration if rng.random() >= 0.15 else int(rng.uniform(0.6, 1.0) * duration)
            history.append(i)
            if len(history) > self.config.history_size:
                del history[0]
        number = self._responses
        self._responses += 1
        return Interaction(
            event_id=f"sim{self.config.seed}-r{number:09d}",
            user_id=user_id,
            item_id=item_id,
            type=kind,
            timestamp=at_ms / 1000,
            ms_played=played,
            duration_ms=duration,
            device=device,
            country=self._country_names[u],
            source=source,
        )

    def _logits_one(self, u: int, i: int) -> float:
        bonus = (
            self.config.favourite_artist_bonus
            if self._item_artist[i] in self._favourites[u]
            else 0.0
        )
        return float(
            self._item_vectors[i] @ self._user_vectors[u]
            + self._quality[i]
            + self._user_bias[u]
            - 1.0
            + bonus
        )


def _bisect_time(records: list[_Record], at_ms: int) -> int:
    """Index of the first record at or after ``at_ms`` (records sorted by time)."""
    low, high = 0, len(records)
    while low < high:
        middle = (low + high) // 2
        if records[middle][0] < at_ms:
            low = middle + 1
        else:
            high = middle
    return low


def _roman(number: int) -> str:
    numerals = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = []
    for value, symbol in numerals:
        while number >= value:
            out.append(symbol)
            number -= value
    return "".join(out)
