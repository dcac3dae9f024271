"""Synthetic demo data: RevOS source tenants and the AudienceOS baseline, deterministic per seed.

The RevOS rows follow sql/revos/0001; the AudienceOS rows are what the unified database holds for
AudienceOS after sql/unified/0002-0008 (cartridges as 0005 leaves them: app_context 'audience',
chat messages answered by 'gemini' as 0006 marks them; every other app_context is the column's
default, as it was for the rows that existed when 0004 added it).

Determinism without memory: every id is a hash of (seed, agency, table, row number), so a child row
names its parent by the parent's row number and nothing has to be remembered between tables; every
table of every agency draws from its own `random.Random` seeded by the same path, so the content
does not depend on the order tables are written in. Timestamps derive from a fixed base, never now().
Rows stream from generators straight into `COPY`: `--scale 1000` (an agency of about a million
rows) runs in the same memory as `--scale 1`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import bcrypt
import psycopg
from django.db import connections, transaction
from django.utils.text import slugify
from psycopg import sql

from migration_jobs.demo.phase0 import phase0_problems_plant
from migration_jobs.etl.catalog import catalog_read, table_identifier
from migration_jobs.services.database_marks import DatabaseNotMarked, demo_databases_claim

BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
SPAN_SECONDS = 365 * 86400

LEAD_STATUSES = ("new", "contacted", "replied", "qualified", "converted", "lost")
DM_DIRECTIONS = ("inbound", "outbound")

FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
    "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Xavi",
    "Yara", "Zoe", "Arjun", "Bea", "Carlos", "Dana", "Emeka", "Fiona",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Khan",
    "Lopez", "Mensah", "Novak", "Okafor", "Park", "Quispe", "Rossi", "Singh", "Tanaka", "Ueda",
    "Varga", "Weber", "Xu", "Yilmaz", "Zhang", "Moreau", "Silva", "Kowalski", "Nguyen",
)  # fmt: skip
AGENCY_WORDS = (
    "Northwind", "Bluepeak", "Brightline", "Cobalt", "Driftwood", "Evergreen", "Foxglove", "Granite",
    "Harbor", "Ironwood", "Juniper", "Keystone", "Lighthouse", "Meridian", "Nimbus", "Oakridge",
    "Pinecrest", "Quarry", "Redwood", "Summit", "Tidewater", "Upland", "Vantage", "Westbrook",
)  # fmt: skip
AGENCY_KINDS = ("Media", "Growth", "Digital", "Partners", "Labs", "Collective", "Studio", "Outreach")
COMPANY_WORDS = (
    "Acme", "Apex", "Atlas", "Beacon", "Cascade", "Crescent", "Delta", "Echo", "Falcon", "Frontier",
    "Glacier", "Horizon", "Indigo", "Jade", "Kinetic", "Lumen", "Magnolia", "Nova", "Orbit", "Pioneer",
    "Quantum", "Radiant", "Sequoia", "Solstice", "Titan", "Unity", "Vertex", "Willow", "Zenith", "Zephyr",
)  # fmt: skip
COMPANY_KINDS = (
    "Logistics", "Health", "Software", "Foods", "Capital", "Energy", "Robotics", "Dental", "Fitness",
    "Legal", "Realty", "Analytics", "Apparel", "Travel", "Insurance", "Print", "Solar", "Coffee",
)  # fmt: skip
LEGAL_SUFFIXES = ("Inc", "LLC", "Ltd", "GmbH")
TLDS = ("com", "io", "co", "agency")
TOPICS = (
    "pipeline hygiene", "cold outreach", "founder-led sales", "content cadence", "B2B SEO",
    "hiring SDRs", "pricing pages", "webinar funnels", "account-based marketing", "churn",
)  # fmt: skip
TRIGGER_WORDS = ("GUIDE", "PLAYBOOK", "TEMPLATE", "CHECKLIST", "SCRIPT", "DECK")
COMMENT_LINES = (
    "Great point!", "This is spot on.", "Interested", "Send it over please", "Following",
    "We tried this last quarter, worked well.", "Would love the template", "Agree 100%",
)  # fmt: skip
PERMISSIONS = tuple(
    (role, resource, "manage" if role != "member" else "read")
    for role in ("owner", "admin", "member")
    for resource in ("clients", "campaigns", "reports", "settings")
)


class DemoDataError(Exception):
    """The demo data cannot be written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class DemoAgency:
    """One seeded agency: its RevOS row, its AudienceOS row, or both (the same firm in two apps)."""

    revos_id: uuid.UUID | None
    revos_name: str | None
    unified_id: uuid.UUID | None
    unified_name: str | None

    @property
    def kind(self) -> str:
        if self.revos_id and self.unified_id:
            return "both"
        return "revos" if self.revos_id else "audience"


@dataclass
class DemoSummary:
    """Rows written per table ("revos.posts", "unified.client", ...) and the agencies seeded."""

    rows: Counter[str] = field(default_factory=Counter)
    agencies: list[DemoAgency] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


# ---------------------------------------------------------------------------------------------
# Agencies: derived ids, counts, names


@dataclass(frozen=True)
class _Table:
    """One table to fill: its columns, its rows per agency at scale 1, and its row generator."""

    name: str
    columns: tuple[str, ...] | None  # None: every column, as the database's catalog lists them
    base: int
    rows: Callable[..., Iterator[tuple]]
    scaled: bool = True

    def count(self, scale: float) -> int:
        return max(1, round(self.base * scale)) if self.scaled else self.base


class _Tenant:
    """One agency in one app: the namespace its ids and random streams derive from."""

    def __init__(self, *, key: str, scale: float, tables: Sequence[_Table], name: str) -> None:
        self.key = key
        self.name = name
        self.counts = {table.name: table.count(scale) for table in tables}

    def id(self, table: str, index: int) -> uuid.UUID:
        digest = hashlib.blake2b(f"{self.key}/{table}/{index}".encode(), digest_size=16).digest()
        return uuid.UUID(bytes=digest, version=4)

    def n(self, table: str) -> int:
        return self.counts[table]

    def pick(self, rng: random.Random, table: str) -> uuid.UUID:
        return self.id(table, rng.randrange(self.counts[table]))

    def rng(self, table: str) -> random.Random:
        return random.Random(f"{self.key}/{table}")


class _RevosAgency(_Tenant):
    domain: str | None
    mail_domain: str


class _AudienceAgency(_Tenant):
    domain: str
    slug: str
    twin: _RevosAgency | None
    shared_users: int
    shared_clients: int


def _stamp(row_id: uuid.UUID) -> datetime:
    """A row's creation time, derived from its id so that children can be dated after it."""
    return BASE_TIME + timedelta(seconds=(row_id.int >> 64) % SPAN_SECONDS)


def _later(moment: datetime, rng: random.Random, hours: int = 72) -> datetime:
    return moment + timedelta(seconds=rng.randrange(60, hours * 3600))


def _maybe(rng: random.Random, null_share: float, value):
    """`value`, or NULL for about `null_share` of the rows (the dirt real data has)."""
    return None if rng.random() < null_share else value


def _person(row_id: uuid.UUID) -> tuple[str, str]:
    bits = row_id.int
    return FIRST_NAMES[bits % len(FIRST_NAMES)], LAST_NAMES[(bits >> 8) % len(LAST_NAMES)]


def _company(index: int, offset: int) -> str:
    """A company name unique per index within one agency (the offset varies it between agencies)."""
    width = len(COMPANY_WORDS) * len(COMPANY_KINDS)
    # 127 is prime to the width, so the first `width` indexes each get their own word pair.
    spot = (index * 127 + offset) % width
    name = f"{COMPANY_WORDS[spot % len(COMPANY_WORDS)]} {COMPANY_KINDS[spot // len(COMPANY_WORDS)]}"
    return name if index < width else f"{name} {index // width + 1}"


def _company_offset(tenant: _Tenant) -> int:
    return tenant.id("clients", -1).int % 997


def demo_name_normalize(name: str) -> str:
    """Lower case, punctuation and repeated whitespace dropped: how the demo's name twins compare."""
    return " ".join(re.sub(r"[^\w\s]", " ", name.lower()).split())


def _variant(name: str, how: int, *, legal_suffix_may_differ: bool = False) -> str:
    """The same firm's name as the other app spelled it: case, whitespace, punctuation, suffix."""
    words = name.split()
    if how == 1:
        return name.upper()
    if how == 2:
        return f"  {'  '.join(words)} "
    if how == 3 and words[-1] in LEGAL_SUFFIXES:
        return f"{' '.join(words[:-1])}, {words[-1]}."
    if how == 4:
        return name.lower()
    if how == 5 and legal_suffix_may_differ and words[-1] not in LEGAL_SUFFIXES:
        return f"{name} LLC"
    return name


def _domain(base_name: str, tld_pick: int) -> str:
    return f"{slugify(base_name).replace('-', '')}.{TLDS[tld_pick % len(TLDS)]}"


class _Taken:
    """Agency names, slugs and domains already in either database, so a new demo never clashes."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.slugs: set[str] = set()
        self.domains: set[str] = set()

    @classmethod
    def load(cls) -> _Taken:
        taken = cls()
        with connections["revos"].cursor() as cursor:
            cursor.execute("SELECT name, domain FROM agencies")
            for name, domain in cursor.fetchall():
                taken._add(name, domain)
        with connections["unified"].cursor() as cursor:
            cursor.execute("SELECT name, slug, domain FROM agency")
            for name, slug, domain in cursor.fetchall():
                taken._add(name, domain)
                taken.slugs.add(slug)
        return taken

    def _add(self, name: str, domain: str | None) -> None:
        self.names.add(_name_key(name))
        if domain:
            self.domains.add(domain.lower())

    def claim(self, base: str, tld_pick: int) -> tuple[str, str]:
        """`base` (numbered if it is taken) and its domain, both reserved from now on."""
        candidate, number = base, 2
        while _name_key(candidate) in self.names or _domain(candidate, tld_pick) in self.domains:
            candidate, number = f"{base} {number}", number + 1
        domain = _domain(candidate, tld_pick)
        self._add(candidate, domain)
        return candidate, domain

    def slug(self, name: str) -> str:
        base = slugify(name)[:90] or "agency"
        candidate, number = base, 2
        while candidate in self.slugs:
            candidate, number = f"{base}-{number}", number + 1
        self.slugs.add(candidate)
        return candidate


def _name_key(name: str) -> str:
    """A firm's name without case, punctuation or legal suffix: two agencies must not share it."""
    words = demo_name_normalize(name).split()
    if words and words[-1] in {suffix.lower() for suffix in LEGAL_SUFFIXES}:
        words.pop()
    return " ".join(words)


def _agency_names(rng: random.Random, count: int) -> Iterator[str]:
    pool = [f"{word} {kind}" for word in AGENCY_WORDS for kind in AGENCY_KINDS]
    rng.shuffle(pool)
    for index in range(count):
        name = pool[index % len(pool)]
        yield name if index < len(pool) else f"{name} {index // len(pool) + 1}"


def _revos_agency(*, key: str, scale: float, base: str, taken: _Taken, dirty: bool) -> _RevosAgency:
    agency = _RevosAgency(key=key, scale=scale, tables=REVOS_TABLES, name="")
    picks = agency.id("agencies", -1).int
    agency.name, agency.mail_domain = taken.claim(base, picks >> 8)
    if picks % 3 == 0:
        agency.name = f"{agency.name} {LEGAL_SUFFIXES[(picks >> 4) % len(LEGAL_SUFFIXES)]}"
    # A RevOS-only agency sometimes never filled in its domain.
    agency.domain = None if dirty and (picks >> 12) % 3 == 0 else agency.mail_domain
    return agency


def _audience_agency(
    *, key: str, scale: float, taken: _Taken, twin: _RevosAgency | None, base: str | None = None
) -> _AudienceAgency:
    agency = _AudienceAgency(key=key, scale=scale, tables=UNIFIED_TABLES, name="")
    agency.twin = twin
    picks = agency.id("agency", -1).int
    if twin is None:
        agency.name, agency.domain = taken.claim(base, picks >> 8)
        agency.shared_users = agency.shared_clients = 0
    else:
        agency.name = _variant(twin.name, picks % 6, legal_suffix_may_differ=True)
        agency.domain = twin.mail_domain
        agency.shared_users = min(twin.n("users"), max(1, agency.n("user") // 2))
        agency.shared_clients = min(twin.n("clients"), max(1, agency.n("client") // 2))
    agency.slug = taken.slug(agency.name)
    return agency


@dataclass
class _Plan:
    revos: list[_RevosAgency] = field(default_factory=list)
    audience: list[_AudienceAgency] = field(default_factory=list)


def _demo_plan(*, agencies: int, scale: float, seed: int, taken: _Taken) -> _Plan:
    """Which agencies the demo has: about half in both apps, the rest RevOS-only, 1-2 AudienceOS-only."""
    rng = random.Random(f"demo:{seed}")
    audience_only = 1 if agencies < 4 else 2
    names = _agency_names(rng, agencies + audience_only)
    shared = set(rng.sample(range(agencies), (agencies + 1) // 2))
    plan = _Plan()
    for index in range(agencies):
        key = f"demo:{seed}:{index}"
        agency = _revos_agency(key=key, scale=scale, base=next(names), taken=taken, dirty=index not in shared)
        plan.revos.append(agency)
        if index in shared:
            plan.audience.append(_audience_agency(key=f"{key}:aos", scale=scale, taken=taken, twin=agency))
    for index in range(audience_only):
        key = f"demo:{seed}:aos{index}"
        plan.audience.append(_audience_agency(key=key, scale=scale, taken=taken, twin=None, base=next(names)))
    return plan


# ---------------------------------------------------------------------------------------------
# RevOS rows, one generator per table; each yields rows in the table's column order.


def _revos_user_email(agency: _RevosAgency, index: int) -> str:
    first, last = _person(agency.id("users", index))
    return f"{first}.{last}{index}@{agency.mail_domain}".lower()


def _lead_email(lead_id: uuid.UUID) -> str | None:
    """A lead's email, or None for the ~30% the scrapers never found (derived, so others can cite it)."""
    bits = lead_id.int
    if (bits >> 20) % 10 < 3:
        return None
    first, last = _person(lead_id)
    company = COMPANY_WORDS[(bits >> 32) % len(COMPANY_WORDS)].lower()
    return f"{first}.{last}.{(bits >> 40) % 1000}@{company}.example".lower()


def _agencies(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    row_id = a.id("agencies", 0)
    created = _stamp(row_id)
    yield row_id, a.name, a.domain, rng.choice(("starter", "growth", "scale")), created, _later(created, rng)


def _users(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("users")):
        row_id = a.id("users", i)
        role = "owner" if i == 0 else rng.choice(("admin", "member", "member"))
        full_name = _maybe(rng, 0.1, " ".join(_person(row_id)))
        yield row_id, agency_id, _revos_user_email(a, i), full_name, role, _stamp(row_id)


def _revos_client_name(a: _RevosAgency, index: int) -> str:
    name = _company(index, _company_offset(a))
    return f"{name} Inc" if index % 4 == 2 else name


def _clients(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("clients")):
        row_id, name = a.id("clients", i), _revos_client_name(a, i)
        website = _maybe(rng, 0.25, f"https://{slugify(name)}.example")
        created = _stamp(row_id)
        status = rng.choice(("active", "active", "active", "paused", "churned"))
        yield row_id, agency_id, name, website, status, created, _later(created, rng, 2000)


def _chat_sessions(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("chat_sessions")):
        row_id = a.id("chat_sessions", i)
        user_id, client_id = _maybe(rng, 0.1, a.pick(rng, "users")), _maybe(rng, 0.4, a.pick(rng, "clients"))
        title = _maybe(rng, 0.2, f"Ideas for {rng.choice(TOPICS)}")
        created = _stamp(row_id)
        yield row_id, agency_id, user_id, client_id, title, created, _later(created, rng)


def _chat_messages(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("chat_messages")):
        session_id = a.pick(rng, "chat_sessions")
        role = "user" if i % 2 == 0 else "assistant"
        content = f"{'Draft' if role == 'user' else 'Here is'} a post about {rng.choice(TOPICS)}."
        yield a.id("chat_messages", i), session_id, role, content, _later(_stamp(session_id), rng)


def _hgc_sessions(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("hgc_sessions")):
        row_id = a.id("hgc_sessions", i)
        metadata = json.dumps({"agent": "agentkit", "model": rng.choice(("gpt-4o", "gpt-4.1"))})
        created = _stamp(row_id)
        title = _maybe(rng, 0.2, f"HGC: {rng.choice(TOPICS)}")
        yield row_id, agency_id, _maybe(rng, 0.1, a.pick(rng, "users")), title, metadata, created, _later(created, rng)


def _hgc_messages(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("hgc_messages")):
        session_id = a.pick(rng, "hgc_sessions")
        role = "user" if i % 2 == 0 else "assistant"
        tools = None if role == "user" or rng.random() < 0.6 else json.dumps([{"name": "search_leads", "args": {}}])
        content = f"{'Find' if role == 'user' else 'Found'} leads interested in {rng.choice(TOPICS)}."
        yield a.id("hgc_messages", i), session_id, role, content, tools, _later(_stamp(session_id), rng)


def _brand_cartridges(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id, offset = a.id("agencies", 0), _company_offset(a)
    for i in range(a.n("brand_cartridges")):
        row_id, company = a.id("brand_cartridges", i), _company(i, offset)
        industry = _maybe(rng, 0.3, COMPANY_KINDS[i % len(COMPANY_KINDS)])
        tone = _maybe(rng, 0.2, rng.choice(("friendly", "bold", "expert", "playful")))
        logo = _maybe(rng, 0.5, f"https://cdn.example/logos/{row_id.hex[:12]}.png")
        created = _stamp(row_id)
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.2, a.pick(rng, "users")),
            f"{company} brand",
            company,
            industry,
            tone,
            logo,
            rng.random() > 0.1,
            created,
            _later(created, rng),
        )


def _style_cartridges(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("style_cartridges")):
        row_id = a.id("style_cartridges", i)
        style = _maybe(rng, 0.2, rng.choice(("Short lines, one idea each.", "Story first, lesson last.")))
        examples = json.dumps([f"Example post about {rng.choice(TOPICS)}"])
        created = _stamp(row_id)
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.2, a.pick(rng, "users")),
            f"Style {i + 1}",
            style,
            examples,
            rng.random() > 0.1,
            created,
            _later(created, rng),
        )


def _linkedin_accounts(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("linkedin_accounts")):
        row_id = a.id("linkedin_accounts", i)
        first, last = _person(row_id)
        url = f"https://www.linkedin.com/in/{first}-{last}-{row_id.hex[:6]}".lower()
        unipile = _maybe(rng, 0.2, f"unp_{row_id.hex[:16]}")
        status = rng.choice(("connected", "connected", "disconnected"))
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.1, a.pick(rng, "users")),
            url,
            _maybe(rng, 0.15, f"{first} {last}"),
            unipile,
            status,
            _stamp(row_id),
        )


def _campaigns(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("campaigns")):
        row_id = a.id("campaigns", i)
        client_id = _maybe(rng, 0.2, a.id("clients", i % a.n("clients")))
        trigger = _maybe(rng, 0.25, TRIGGER_WORDS[i % len(TRIGGER_WORDS)])
        settings = json.dumps({"daily_dm_limit": rng.choice((20, 40, 80)), "auto_reply": rng.random() < 0.5})
        created = _stamp(row_id)
        status = rng.choice(("draft", "active", "active", "paused", "completed"))
        yield (
            row_id,
            agency_id,
            client_id,
            f"{rng.choice(TOPICS).title()} {i + 1}",
            trigger,
            status,
            settings,
            created,
            _later(created, rng, 500),
        )


def _posts(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("posts")):
        row_id = a.id("posts", i)
        created = _stamp(row_id)
        status = rng.choice(("draft", "scheduled", "published", "published", "published"))
        published = _later(created, rng, 48) if status == "published" else None
        content = f"{rng.randrange(3, 12)} lessons on {rng.choice(TOPICS)}. Comment {rng.choice(TRIGGER_WORDS)}."
        campaign_id = _maybe(rng, 0.4, a.pick(rng, "campaigns"))
        yield row_id, agency_id, a.pick(rng, "linkedin_accounts"), campaign_id, content, status, published, created


def _comments(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("comments")):
        row_id, post_id = a.id("comments", i), a.pick(rng, "posts")
        first, last = _person(row_id)
        author = _maybe(rng, 0.05, f"{first} {last}")
        url = _maybe(rng, 0.1, f"https://www.linkedin.com/in/{first}-{last}-{row_id.hex[:6]}".lower())
        content = rng.choice(COMMENT_LINES) if rng.random() < 0.7 else rng.choice(TRIGGER_WORDS)
        yield row_id, post_id, author, url, content, _later(_stamp(post_id), rng)


def _lead_magnets(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("lead_magnets")):
        row_id = a.id("lead_magnets", i)
        campaign_id = a.id("campaigns", i % a.n("campaigns"))
        url = _maybe(rng, 0.2, f"https://files.example/{row_id.hex[:10]}.pdf")
        title = f"The {rng.choice(TOPICS)} {TRIGGER_WORDS[i % len(TRIGGER_WORDS)].lower()}"
        yield row_id, agency_id, campaign_id, title, url, _stamp(row_id)


def _lead_magnet_library(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("lead_magnet_library")):
        row_id = a.id("lead_magnet_library", i)
        description = _maybe(rng, 0.3, f"A reusable asset on {rng.choice(TOPICS)}.")
        file_url = _maybe(rng, 0.2, f"https://files.example/library/{row_id.hex[:10]}.pdf")
        yield row_id, agency_id, f"Library item {i + 1}", description, file_url, _stamp(row_id)


def _leads(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("leads")):
        row_id = a.id("leads", i)
        magnet = rng.randrange(a.n("lead_magnets"))
        # Most leads came through a lead magnet and so through its campaign; some arrived bare.
        if rng.random() < 0.6:
            magnet_id, campaign_id = a.id("lead_magnets", magnet), a.id("campaigns", magnet % a.n("campaigns"))
        else:
            magnet_id, campaign_id = None, _maybe(rng, 0.25, a.pick(rng, "campaigns"))
        first, last = _person(row_id)
        name = _maybe(rng, 0.05, f"{first} {last}")
        url = _maybe(rng, 0.1, f"https://www.linkedin.com/in/{first}-{last}-{row_id.hex[:6]}".lower())
        yield (
            row_id,
            agency_id,
            campaign_id,
            magnet_id,
            name,
            _lead_email(row_id),
            url,
            rng.choice(LEAD_STATUSES),
            _stamp(row_id),
        )


def _dm_sequences(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("dm_sequences")):
        row_id = a.id("dm_sequences", i)
        steps = json.dumps([{"delay_hours": 24 * step, "template": f"step {step + 1}"} for step in range(3)])
        campaign_id = _maybe(rng, 0.15, a.id("campaigns", i % a.n("campaigns")))
        status = rng.choice(("active", "active", "paused"))
        yield row_id, agency_id, campaign_id, f"Sequence {i + 1}", steps, status, _stamp(row_id)


def _dm_messages(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("dm_messages")):
        row_id = a.id("dm_messages", i)
        lead_id = _maybe(rng, 0.05, a.pick(rng, "leads"))
        direction = DM_DIRECTIONS[rng.random() < 0.7]
        body = "Thanks, sending it now!" if direction == "outbound" else "Yes please, send it over."
        sent = _maybe(rng, 0.1, _later(_stamp(row_id), rng))
        yield row_id, a.pick(rng, "dm_sequences"), lead_id, direction, body, sent


def _dm_deliveries(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("dm_deliveries")):
        row_id = a.id("dm_deliveries", i)
        status = rng.choice(("pending", "sent", "sent", "failed"))
        delivered = _later(_stamp(row_id), rng) if status == "sent" else None
        lead_id = _maybe(rng, 0.05, a.pick(rng, "leads"))
        yield row_id, a.pick(rng, "dm_sequences"), lead_id, rng.randrange(3), status, delivered


def _webhook_configs(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("webhook_configs")):
        row_id = a.id("webhook_configs", i)
        secret = _maybe(rng, 0.3, row_id.hex)
        events = json.dumps(rng.sample(["lead.created", "dm.sent", "comment.triggered", "post.published"], 2))
        yield (
            row_id,
            agency_id,
            f"https://hooks.example/{row_id.hex[:8]}",
            secret,
            events,
            rng.random() > 0.2,
            _stamp(row_id),
        )


def _webhook_deliveries(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("webhook_deliveries")):
        config_id = a.pick(rng, "webhook_configs")
        payload = json.dumps({"event": "lead.created", "n": i})
        status_code = _maybe(rng, 0.1, rng.choice((200, 200, 200, 500, 404)))
        yield a.id("webhook_deliveries", i), config_id, payload, status_code, _later(_stamp(config_id), rng, 5000)


def _webhook_endpoints(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("webhook_endpoints")):
        row_id = a.id("webhook_endpoints", i)
        yield row_id, agency_id, f"https://api.example/inbound/{row_id.hex[:8]}", _stamp(row_id)


def _webhook_logs(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("webhook_logs")):
        endpoint_id = a.pick(rng, "webhook_endpoints")
        payload = json.dumps({"source": rng.choice(("zapier", "make", "n8n")), "n": i})
        yield a.id("webhook_logs", i), endpoint_id, payload, _later(_stamp(endpoint_id), rng, 5000)


def _pods(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("pods")):
        row_id = a.id("pods", i)
        yield row_id, agency_id, f"{rng.choice(AGENCY_WORDS)} pod", _stamp(row_id)


def _pod_members(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("pod_members")):
        # A member's pod follows from its row number, so activities can name a matching pair.
        pod_id = a.id("pods", i % a.n("pods"))
        yield a.id("pod_members", i), pod_id, a.pick(rng, "linkedin_accounts"), _later(_stamp(pod_id), rng, 500)


def _pod_activities(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("pod_activities")):
        member = rng.randrange(a.n("pod_members"))
        pod_id = a.id("pods", member % a.n("pods"))
        member_id = _maybe(rng, 0.05, a.id("pod_members", member))
        post_id = _maybe(rng, 0.1, a.pick(rng, "posts"))
        activity = rng.choice(("like", "comment", "repost"))
        row_id = a.id("pod_activities", i)
        yield row_id, pod_id, member_id, post_id, activity, _stamp(row_id)


def _console_workflows(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("console_workflows")):
        row_id = a.id("console_workflows", i)
        definition = json.dumps({"steps": ["research", "draft", "review"][: rng.randrange(1, 4)]})
        yield row_id, agency_id, f"Workflow {i + 1}", definition, _stamp(row_id)


def _console_prompts(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("console_prompts")):
        row_id = a.id("console_prompts", i)
        workflow_id = _maybe(rng, 0.2, a.pick(rng, "console_workflows"))
        prompt = f"Write a LinkedIn post about {rng.choice(TOPICS)} in the brand voice."
        yield row_id, agency_id, workflow_id, f"Prompt {i + 1}", prompt, _stamp(row_id)


def _campaign_skills(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("campaign_skills")):
        skill = rng.choice(("comment_reply", "dm_followup", "lead_enrich", "post_writer"))
        config = json.dumps({"enabled": rng.random() > 0.2})
        yield a.id("campaign_skills", i), a.id("campaigns", i % a.n("campaigns")), skill, config


def _skill_executions(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("skill_executions")):
        row_id = a.id("skill_executions", i)
        status = rng.choice(("queued", "running", "succeeded", "succeeded", "failed"))
        started = None if status == "queued" else _stamp(row_id)
        finished = _later(started, rng, 1) if status in ("succeeded", "failed") else None
        output = json.dumps({"ok": status == "succeeded"}) if finished else None
        yield row_id, a.pick(rng, "campaign_skills"), status, _maybe(rng, 0.2, '{"lead": 1}'), output, started, finished


def _memories(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("memories")):
        row_id = a.id("memories", i)
        content = f"Prefers posts about {rng.choice(TOPICS)}."
        yield row_id, agency_id, _maybe(rng, 0.2, a.pick(rng, "users")), content, '{"source": "hgc"}', _stamp(row_id)


def _queue_jobs(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("queue_jobs")):
        row_id = a.id("queue_jobs", i)
        job_type = rng.choice(("send_dm", "scrape_profile", "publish_post"))
        status = rng.choice(("queued", "done", "done", "failed"))
        yield (
            row_id,
            agency_id,
            job_type,
            json.dumps({"attempt": rng.randrange(1, 4)}),
            status,
            _maybe(rng, 0.2, _stamp(row_id)),
        )


def _notifications(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("notifications")):
        row_id = a.id("notifications", i)
        created = _stamp(row_id)
        body = _maybe(rng, 0.3, "A lead replied to your sequence.")
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.1, a.pick(rng, "users")),
            "New reply",
            body,
            _maybe(rng, 0.5, _later(created, rng)),
            created,
        )


def _spread(i: int, count: int, among: int, shift: int = 0) -> int:
    """Distinct row numbers for `count` rows chosen among `among` (no set of them kept in memory)."""
    return (i * among // count + shift) % among if count <= among else i % among


def _processed_comments(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id, count = a.id("agencies", 0), a.n("processed_comments")
    for i in range(count):
        comment_id = _maybe(rng, 0.05, a.id("comments", _spread(i, count, a.n("comments"))))
        row_id = a.id("processed_comments", i)
        yield row_id, agency_id, comment_id, _stamp(row_id)


def _processed_messages(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("processed_messages")):
        row_id = a.id("processed_messages", i)
        yield row_id, agency_id, f"msg_{row_id.hex[:20]}", _stamp(row_id)


def _triggered_comments(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id, count = a.id("agencies", 0), a.n("triggered_comments")
    for i in range(count):
        comment_id = a.id("comments", _spread(i, count, a.n("comments"), shift=1))
        row_id = a.id("triggered_comments", i)
        yield row_id, agency_id, comment_id, _maybe(rng, 0.1, a.pick(rng, "campaigns")), _stamp(row_id)


def _pending_connections(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("pending_connections")):
        row_id = a.id("pending_connections", i)
        first, last = _person(row_id)
        url = f"https://www.linkedin.com/in/{first}-{last}-{row_id.hex[:6]}".lower()
        yield row_id, agency_id, _maybe(rng, 0.1, a.pick(rng, "linkedin_accounts")), url, _stamp(row_id)


def _connected_accounts(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("connected_accounts")):
        row_id = a.id("connected_accounts", i)
        provider = ("linkedin", "google", "hubspot")[i % 3]
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.1, a.pick(rng, "users")),
            provider,
            f"ext_{row_id.hex[:12]}",
            _stamp(row_id),
        )


def _scrape_jobs(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("scrape_jobs")):
        row_id = a.id("scrape_jobs", i)
        status = rng.choice(("queued", "done", "done", "failed"))
        result = json.dumps({"profiles": rng.randrange(5, 200)}) if status == "done" else None
        yield row_id, agency_id, f"https://www.linkedin.com/search/{row_id.hex[:8]}", status, result, _stamp(row_id)


def _email_queue(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("email_queue")):
        row_id = a.id("email_queue", i)
        lead_id, to_email = a.pick(rng, "leads"), None
        for _attempt in range(5):
            to_email = _lead_email(lead_id)
            if to_email:
                break
            lead_id = a.pick(rng, "leads")
        if to_email is None:  # an address typed in by hand, tied to no lead
            lead_id, to_email = None, f"contact{i}@{a.mail_domain}"
        status = rng.choice(("queued", "sent", "sent", "bounced"))
        body = _maybe(rng, 0.1, "Here is the guide you asked for.")
        yield (
            row_id,
            agency_id,
            lead_id,
            to_email,
            "Your guide",
            body,
            status,
            _maybe(rng, 0.2, _later(_stamp(row_id), rng)),
        )


def _email_extraction_reviews(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("email_extraction_reviews")):
        row_id, lead_id = a.id("email_extraction_reviews", i), a.pick(rng, "leads")
        status = rng.choice(("pending", "approved", "rejected"))
        reviewed = None if status == "pending" else _stamp(row_id)
        yield row_id, agency_id, _maybe(rng, 0.1, lead_id), _lead_email(lead_id), status, reviewed


def _unipile_webhook_logs(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agencies", 0)
    for i in range(a.n("unipile_webhook_logs")):
        row_id = a.id("unipile_webhook_logs", i)
        event = rng.choice(("message.received", "account.connected", "invitation.accepted"))
        yield row_id, agency_id, event, json.dumps({"event": event, "n": i}), _stamp(row_id)


def _backup_dm_sequences(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    """A copy RevOS ops kept of some sequences; the first row's agency and campaign are long gone."""
    agency_id = a.id("agencies", 0)
    for i in range(a.n("backup_dm_sequences")):
        orphan = i == 0 or rng.random() < 0.2
        campaign_id = a.id("deleted_campaigns", i) if orphan else a.pick(rng, "campaigns")
        owner = a.id("deleted_agencies", i) if i == 0 else agency_id
        created = _stamp(a.id("backup_dm_sequences", i))
        yield (
            a.id("backup_dm_sequences", i),
            owner,
            campaign_id,
            _maybe(rng, 0.2, f"Old sequence {i + 1}"),
            _maybe(rng, 0.3, "[]"),
            _maybe(rng, 0.3, "archived"),
            created,
            _later(created, rng, 2000),
        )


def _campaigns_trigger_word_backup(a: _RevosAgency, rng: random.Random) -> Iterator[tuple]:
    for i in range(a.n("campaigns_trigger_word_backup")):
        orphan = i == 0 or rng.random() < 0.2
        campaign_id = a.id("deleted_campaigns", 1000 + i) if orphan else a.pick(rng, "campaigns")
        row_id = a.id("campaigns_trigger_word_backup", i)
        yield row_id, campaign_id, _maybe(rng, 0.2, rng.choice(TRIGGER_WORDS)), _stamp(row_id)


# ---------------------------------------------------------------------------------------------
# Supabase Auth accounts: every demo person can sign in, in the app(s) they belong to.

AUTH_INSTANCE = uuid.UUID(int=0)  # GoTrue's single-tenant instance id
# bcrypt's lowest cost: real hashes that verify like production ones, at a millisecond each.
DEMO_BCRYPT_COST = 4
AUTH_USER_COLUMNS = (
    "instance_id id aud role email encrypted_password email_confirmed_at confirmation_token recovery_token"
    " email_change_token_new email_change last_sign_in_at raw_app_meta_data raw_user_meta_data is_super_admin"
    " created_at updated_at"
)
AUTH_IDENTITY_COLUMNS = "id provider_id user_id identity_data provider last_sign_in_at created_at updated_at"


def demo_password(user_id: uuid.UUID) -> str:
    """A seeded person's demo password: derived from their id (itself derived from the seed)."""
    return "demo-" + hashlib.blake2b(f"demo-password/{user_id}".encode(), digest_size=8).hexdigest()


BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.cache
def _bcrypt(password: str) -> str:
    """A $2a$ hash as GoTrue (Go's bcrypt) writes them. Its salt derives from the password, so the
    same seed gives the same rows; cached, so seeding the same seed again costs nothing."""
    digest = hashlib.blake2b(f"demo-salt/{password}".encode(), digest_size=22).digest()
    # The 22nd character carries only 2 bits of the 128-bit salt: keep it canonical (".Oeu").
    salt = "".join(BCRYPT_ALPHABET[b % 64] for b in digest[:21]) + ".Oeu"[digest[21] % 4]
    return bcrypt.hashpw(password.encode(), f"$2a${DEMO_BCRYPT_COST:02d}${salt}".encode()).decode()


def _google_sub(email: str) -> str:
    """The Google account id of an address: the same person has the same one in both apps."""
    return str(int.from_bytes(hashlib.blake2b(email.lower().encode(), digest_size=9).digest()) % 10**21)


@dataclass(frozen=True)
class _Account:
    """One person's account in one app: who, and with which sign-in methods."""

    tenant: _Tenant
    index: int
    user_id: uuid.UUID
    email: str
    full_name: str
    google: bool

    @property
    def created(self) -> datetime:
        return _stamp(self.user_id)

    def user_row(self) -> tuple:
        confirmed = None if self.index % 5 == 4 else _later(self.created, random.Random(str(self.user_id)), 24)
        signed_in = confirmed and confirmed + timedelta(days=2)
        providers = ["email", "google"] if self.google else ["email"]
        return (
            AUTH_INSTANCE,
            self.user_id,
            "authenticated",
            "authenticated",
            self.email,
            _bcrypt(demo_password(self.user_id)),
            confirmed,
            "",
            "",
            "",
            "",
            signed_in,
            json.dumps({"provider": "email", "providers": providers}),
            json.dumps({"full_name": self.full_name}),
            False,
            self.created,
            signed_in or self.created,
        )

    def identity_rows(self) -> Iterator[tuple]:
        email_data = {"sub": str(self.user_id), "email": self.email, "email_verified": True, "phone_verified": False}
        identities = [("email", str(self.user_id), email_data)]
        if self.google:
            sub = _google_sub(self.email)
            google_data = {
                "iss": "https://accounts.google.com",
                "sub": sub,
                "provider_id": sub,
                "email": self.email.lower(),
                "email_verified": True,
                "name": self.full_name,
            }
            identities.append(("google", sub, google_data))
        for number, (provider, provider_id, data) in enumerate(identities):
            row_id = self.tenant.id("auth.identities", self.index * 2 + number)
            yield row_id, provider_id, self.user_id, json.dumps(data), provider, None, self.created, self.created


def _revos_accounts(a: _RevosAgency) -> Iterator[_Account]:
    for i in range(a.n("users")):
        user_id = a.id("users", i)
        # Most RevOS people also signed in with Google.
        yield _Account(a, i, user_id, _revos_user_email(a, i), " ".join(_person(user_id)), google=i % 3 != 2)


def _aos_accounts(a: _AudienceAgency) -> Iterator[_Account]:
    for i in range(a.n("user")):
        first, last, email = _aos_person(a, i)
        # Person 1 (in both apps when the agency is) has the same Google account in both.
        yield _Account(a, i, a.id("user", i), email, f"{first} {last}", google=i % 4 == 1)


def _auth_users(accounts: Callable[..., Iterator[_Account]]) -> Callable[..., Iterator[tuple]]:
    return lambda a, rng: (account.user_row() for account in accounts(a))


def _auth_identities(accounts: Callable[..., Iterator[_Account]]) -> Callable[..., Iterator[tuple]]:
    return lambda a, rng: (row for account in accounts(a) for row in account.identity_rows())


def _auth(name: str, columns: str, rows: Callable[..., Iterator[tuple]]) -> _Table:
    """A Supabase Auth table: its rows carry the named columns (GoTrue's defaults fill the rest);
    one or two rows per person, whatever the scale."""
    return _Table(name, tuple(columns.split()), 0, rows, False)


def _t(name: str, base: int, rows: Callable[..., Iterator[tuple]], scaled: bool = True) -> _Table:
    """A RevOS table: its rows carry every column, in the order sql/revos creates them."""
    return _Table(name, None, base, rows, scaled)


def _aos(name: str, columns: str, base: int, rows: Callable[..., Iterator[tuple]], scaled: bool = True) -> _Table:
    """An AudienceOS table: its rows carry the named columns; the rest (app_context and the other
    columns the unified migrations added) keep the defaults they had for AudienceOS's own rows."""
    return _Table(name, tuple(columns.split()), base, rows, scaled)


# In foreign-key order; each generator yields every column of its table in the order sql/revos
# creates them, and the writer reads their names from the database's catalog. Rows per agency at
# scale 1 (about 1,000; posts, comments, leads and DMs are nine tenths of them, so --scale 1000
# makes an agency of about a million rows).
REVOS_TABLES: tuple[_Table, ...] = (
    _t("agencies", 1, _agencies, scaled=False),
    _t("users", 5, _users),
    _auth("auth.users", AUTH_USER_COLUMNS, _auth_users(_revos_accounts)),
    _auth("auth.identities", AUTH_IDENTITY_COLUMNS, _auth_identities(_revos_accounts)),
    _t("clients", 8, _clients),
    _t("chat_sessions", 6, _chat_sessions),
    _t("chat_messages", 24, _chat_messages),
    _t("hgc_sessions", 4, _hgc_sessions),
    _t("hgc_messages", 16, _hgc_messages),
    _t("brand_cartridges", 2, _brand_cartridges),
    _t("style_cartridges", 2, _style_cartridges),
    _t("linkedin_accounts", 3, _linkedin_accounts),
    _t("campaigns", 4, _campaigns),
    _t("posts", 30, _posts),
    _t("comments", 240, _comments),
    _t("lead_magnets", 4, _lead_magnets),
    _t("lead_magnet_library", 3, _lead_magnet_library),
    _t("leads", 160, _leads),
    _t("dm_sequences", 4, _dm_sequences),
    _t("dm_messages", 320, _dm_messages),
    _t("dm_deliveries", 60, _dm_deliveries),
    _t("webhook_configs", 2, _webhook_configs),
    _t("webhook_deliveries", 8, _webhook_deliveries),
    _t("webhook_endpoints", 1, _webhook_endpoints),
    _t("webhook_logs", 6, _webhook_logs),
    _t("pods", 2, _pods),
    _t("pod_members", 6, _pod_members),
    _t("pod_activities", 20, _pod_activities),
    _t("console_workflows", 2, _console_workflows),
    _t("console_prompts", 4, _console_prompts),
    _t("campaign_skills", 4, _campaign_skills),
    _t("skill_executions", 12, _skill_executions),
    _t("memories", 8, _memories),
    _t("queue_jobs", 8, _queue_jobs),
    _t("notifications", 10, _notifications),
    _t("processed_comments", 20, _processed_comments),
    _t("processed_messages", 10, _processed_messages),
    _t("triggered_comments", 10, _triggered_comments),
    _t("pending_connections", 6, _pending_connections),
    _t("connected_accounts", 3, _connected_accounts),
    _t("scrape_jobs", 4, _scrape_jobs),
    _t("email_queue", 10, _email_queue),
    _t("email_extraction_reviews", 6, _email_extraction_reviews),
    _t("unipile_webhook_logs", 8, _unipile_webhook_logs),
    _t("backup_dm_sequences", 3, _backup_dm_sequences),
    _t("campaigns_trigger_word_backup", 3, _campaigns_trigger_word_backup),
)


# ---------------------------------------------------------------------------------------------
# AudienceOS rows in the unified database.


def _aos_agency(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    row_id = a.id("agency", 0)
    created = _stamp(row_id)
    settings = json.dumps({"timezone": rng.choice(("UTC", "America/New_York", "Europe/London"))})
    yield row_id, a.name, a.slug, a.domain, settings, created, _later(created, rng)


def _aos_person(a: _AudienceAgency, index: int) -> tuple[str, str, str]:
    """First name, last name and email of AudienceOS user `index`; the first few are RevOS users too."""
    if index < a.shared_users:
        twin = a.twin
        first, last = _person(twin.id("users", index))
        email = _revos_user_email(twin, index)
        # The same person, but AudienceOS kept the capitals they typed at sign-up.
        return first, last, (f"{first}.{last}{index}@{a.domain}" if index % 2 else email)
    first, last = _person(a.id("user", index))
    return first, last, f"{first}.{last}.{index}@{a.domain}".lower()


def _aos_users(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("user")):
        row_id = a.id("user", i)
        first, last, email = _aos_person(a, i)
        role = "owner" if i == 0 else rng.choice(("admin", "member", "member"))
        created = _stamp(row_id)
        yield (
            row_id,
            agency_id,
            email,
            _maybe(rng, 0.05, first),
            _maybe(rng, 0.1, last),
            role,
            created,
            _later(created, rng),
        )


def _aos_client_name(a: _AudienceAgency, index: int) -> str:
    if index < a.shared_clients:
        # exact, upper case, "X, Inc." for "X Inc", extra whitespace, lower case
        return _variant(_revos_client_name(a.twin, index), (0, 1, 3, 2, 4)[index % 5])
    # Numbered past the RevOS twin's clients, so no accidental twin appears.
    twin_clients = a.twin.n("clients") if a.twin else 0
    return _company(twin_clients + index, _company_offset(a.twin or a))


def _aos_clients(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("client")):
        row_id, name = a.id("client", i), _aos_client_name(a, i)
        website = _maybe(rng, 0.2, f"https://{slugify(name)}.example")
        contact = _maybe(rng, 0.3, f"hello@{slugify(name)}.example")
        stage = rng.choice(("onboarding", "active", "active", "renewal"))
        health = _maybe(rng, 0.2, rng.choice(("green", "yellow", "red")))
        created = _stamp(row_id)
        yield row_id, agency_id, name, website, contact, stage, health, created, _later(created, rng, 2000)


def _aos_chat_sessions(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("chat_session")):
        row_id = a.id("chat_session", i)
        user_id, client_id = _maybe(rng, 0.1, a.pick(rng, "user")), _maybe(rng, 0.3, a.pick(rng, "client"))
        title = _maybe(rng, 0.2, f"Client health: {rng.choice(TOPICS)}")
        created = _stamp(row_id)
        yield row_id, agency_id, user_id, client_id, title, '{"page": "dashboard"}', created, _later(created, rng)


def _aos_chat_messages(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("chat_message")):
        session_id = a.pick(rng, "chat_session")
        role = "user" if i % 2 == 0 else "assistant"
        content = f"{'Summarise' if role == 'user' else 'Summary of'} the client's {rng.choice(TOPICS)}."
        yield a.id("chat_message", i), agency_id, session_id, role, content, _later(_stamp(session_id), rng), "gemini"


def _aos_permissions(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i, (role, resource, action) in enumerate(PERMISSIONS):
        row_id = a.id("permission", i)
        yield row_id, agency_id, role, resource, action, _stamp(row_id)


def _aos_cartridges(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("cartridge")):
        row_id = a.id("cartridge", i)
        kind = ("training", "voice", "style", "brand", "preferences", "instructions")[i % 6]
        config = json.dumps({"source": "training", "notes": f"{kind} guidance for {rng.choice(TOPICS)}"})
        created = _stamp(row_id)
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.2, a.pick(rng, "user")),
            f"{kind.title()} {i + 1}",
            kind,
            "audience",
            config,
            rng.random() > 0.1,
            created,
            _later(created, rng),
        )


def _aos_client_assignments(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("client_assignment")):
        row_id = a.id("client_assignment", i)
        client_id = a.id("client", i % a.n("client"))
        role = rng.choice(("owner", "owner", "support"))
        yield row_id, agency_id, client_id, a.pick(rng, "user"), role, _stamp(row_id)


def _aos_tasks(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("task")):
        row_id = a.id("task", i)
        created = _stamp(row_id)
        due = _maybe(rng, 0.3, (created + timedelta(days=rng.randrange(1, 30))).date())
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.1, a.pick(rng, "client")),
            _maybe(rng, 0.2, a.pick(rng, "user")),
            f"Review {rng.choice(TOPICS)}",
            rng.choice(("todo", "in_progress", "done")),
            due,
            created,
        )


def _aos_alerts(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("alert")):
        row_id = a.id("alert", i)
        created = _stamp(row_id)
        resolved = _maybe(rng, 0.5, _later(created, rng))
        yield (
            row_id,
            agency_id,
            _maybe(rng, 0.1, a.pick(rng, "client")),
            rng.choice(("info", "warning", "critical")),
            "Spend is pacing above plan.",
            resolved,
            created,
        )


def _aos_documents(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("document")):
        row_id = a.id("document", i)
        url = _maybe(rng, 0.2, f"https://docs.example/{row_id.hex[:10]}")
        yield row_id, agency_id, _maybe(rng, 0.1, a.pick(rng, "client")), f"Report {i + 1}", url, _stamp(row_id)


def _aos_kpi_snapshots(a: _AudienceAgency, rng: random.Random) -> Iterator[tuple]:
    agency_id = a.id("agency", 0)
    for i in range(a.n("kpi_snapshot")):
        row_id = a.id("kpi_snapshot", i)
        metric = ("roas", "cpl", "ctr", "spend")[i % 4]
        value = f"{rng.uniform(0.5, 5000):.2f}"
        captured = date(2025, 1, 6) + timedelta(days=i % 365)
        yield row_id, agency_id, _maybe(rng, 0.1, a.pick(rng, "client")), metric, value, captured


UNIFIED_TABLES: tuple[_Table, ...] = (
    _aos("agency", "id name slug domain settings created_at updated_at", 1, _aos_agency, scaled=False),
    _aos("user", "id agency_id email first_name last_name role created_at updated_at", 4, _aos_users),
    _auth("auth.users", AUTH_USER_COLUMNS, _auth_users(_aos_accounts)),
    _auth("auth.identities", AUTH_IDENTITY_COLUMNS, _auth_identities(_aos_accounts)),
    _aos(
        "client", "id agency_id name website contact_email stage health_status created_at updated_at", 6, _aos_clients
    ),
    _aos("chat_session", "id agency_id user_id client_id title context created_at updated_at", 4, _aos_chat_sessions),
    _aos("chat_message", "id agency_id session_id role content created_at ai_provider", 16, _aos_chat_messages),
    # RBAC is configuration, not volume: the same matrix at every scale.
    _aos(
        "permission", "id agency_id role resource action created_at", len(PERMISSIONS), _aos_permissions, scaled=False
    ),
    _aos(
        "cartridge",
        "id agency_id user_id name type app_context config is_active created_at updated_at",
        4,
        _aos_cartridges,
    ),
    _aos("client_assignment", "id agency_id client_id user_id role created_at", 6, _aos_client_assignments),
    _aos("task", "id agency_id client_id assignee_id title status due_date created_at", 10, _aos_tasks),
    _aos("alert", "id agency_id client_id severity message resolved_at created_at", 3, _aos_alerts),
    _aos("document", "id agency_id client_id title url created_at", 5, _aos_documents),
    _aos("kpi_snapshot", "id agency_id client_id metric value captured_on", 12, _aos_kpi_snapshots),
)


# ---------------------------------------------------------------------------------------------
# Writing


def _copy(*, database: str, tables: Sequence[_Table], tenants: Sequence[_Tenant], summary: DemoSummary) -> None:
    """Stream every tenant's rows into each table with one COPY per table, on the Django connection."""
    if not tenants:
        return
    connections[database].ensure_connection()
    raw = connections[database].connection
    catalog = catalog_read(raw)
    with raw.cursor() as cursor:
        for table in tables:
            columns = table.columns or catalog.column_names(table.name)
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                table_identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            try:
                summary.rows[f"{database}.{table.name}"] += _copy_table(cursor, statement, table, tenants)
            except psycopg.Error as error:
                raise DemoDataError(f"Writing {database}.{table.name} failed: {error}") from error


def _copy_table(cursor: psycopg.Cursor, statement: sql.Composed, table: _Table, tenants: Sequence[_Tenant]) -> int:
    written = 0
    with cursor.copy(statement) as copy:
        for tenant in tenants:
            for row in table.rows(tenant, tenant.rng(table.name)):
                copy.write_row(row)
                written += 1
    return written


def _refuse_if_present(plan: _Plan) -> None:
    """Stop before writing when this seed's agencies are already there (ids are derived from it)."""
    checks = (
        ("revos", "agencies", [a.id("agencies", 0) for a in plan.revos]),
        ("unified", "agency", [a.id("agency", 0) for a in plan.audience]),
    )
    for database, table, ids in checks:
        with connections[database].cursor() as cursor:
            cursor.execute(f"SELECT name FROM {table} WHERE id = ANY(%s) LIMIT 1", [ids])
            found = cursor.fetchone()
        if found:
            raise DemoDataError(
                f"The {database} database already holds this demo data (agency {found[0]!r}). "
                "Use --reset to empty the tenant tables first, or choose another --seed."
            )


def _write(plan: _Plan) -> DemoSummary:
    summary = DemoSummary()
    with transaction.atomic(using="revos"), transaction.atomic(using="unified"):
        _refuse_if_present(plan)
        _copy(database="revos", tables=REVOS_TABLES, tenants=plan.revos, summary=summary)
        _copy(database="unified", tables=UNIFIED_TABLES, tenants=plan.audience, summary=summary)
    twins = {id(a.twin): a for a in plan.audience if a.twin}
    for agency in plan.revos:
        twin = twins.get(id(agency))
        summary.agencies.append(
            DemoAgency(agency.id("agencies", 0), agency.name, twin and twin.id("agency", 0), twin and twin.name)
        )
    for agency in plan.audience:
        if agency.twin is None:
            summary.agencies.append(DemoAgency(None, None, agency.id("agency", 0), agency.name))
    return summary


def _require_schemas() -> None:
    """Name the command to run when a database lacks the tables the demo fills."""
    for database, table, command in (
        ("revos", "agencies", "apply_revos_schema"),
        ("unified", "cartridge", "apply_unified_schema"),
    ):
        with connections[database].cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{table}"])
            if not cursor.fetchone()[0]:
                raise DemoDataError(f"The {database} database has no {table} table: run `manage.py {command}` first.")


def _claim(*, destructive: str | None) -> None:
    """Only demo and test databases (services/database_marks.py); the refusal is a DemoDataError."""
    try:
        demo_databases_claim(destructive=destructive)
    except DatabaseNotMarked as refusal:
        raise DemoDataError(str(refusal)) from refusal


def _check_scale(scale: float) -> None:
    if not scale > 0:
        raise DemoDataError(f"--scale must be greater than 0 (got {scale}).")


def demo_data_seed(*, agencies: int, scale: float, seed: int) -> DemoSummary:
    """Seed `agencies` RevOS agencies (about half also in AudienceOS) plus 1-2 AudienceOS-only ones.

    Deterministic for a given seed on a given database; refuses (DemoDataError) if this seed's
    agencies are already there. Everything is written in one transaction per database.
    """
    if agencies < 1:
        raise DemoDataError(f"--agencies must be at least 1 (got {agencies}).")
    _check_scale(scale)
    _require_schemas()
    _claim(destructive=None)
    plan = _demo_plan(agencies=agencies, scale=scale, seed=seed, taken=_Taken.load())
    return _write(plan)


def demo_agency_seed(*, scale: float, seed: int, name: str | None = None, people: int | None = None) -> uuid.UUID:
    """Add one RevOS-only agency of the given scale (for benchmarks and tests); returns its id.

    `people`: its users (and their accounts) whatever the scale, e.g. the many people of an
    agency whose cutover window is measured."""
    _check_scale(scale)
    _require_schemas()
    _claim(destructive=None)
    rng = random.Random(f"agency:{seed}")
    base = name or f"{rng.choice(AGENCY_WORDS)} {rng.choice(AGENCY_KINDS)}"
    agency = _revos_agency(key=f"agency:{seed}:{name or ''}", scale=scale, base=base, taken=_Taken.load(), dirty=True)
    if name:  # the caller's name stands as given, though its domain may be numbered
        agency.name = name
    if people is not None:
        agency.counts["users"] = max(1, people)
    _write(_Plan(revos=[agency]))
    return agency.id("agencies", 0)


def demo_data_reset() -> None:
    """Empty every tenant table in the RevOS and unified databases, and the migration bookkeeping."""
    _require_schemas()
    _claim(destructive="--reset")
    # The change capture goes first: while it has an agency, captured tables refuse TRUNCATE.
    kinds = ("tablename IN ('capture_agency', 'change_log')", "tablename IN ('id_map', 'checkpoint')")
    for database in ("revos", "unified"):
        with connections[database].cursor() as cursor:
            for condition in (
                f"schemaname = 'controlplane' AND {kinds[0]}",
                f"schemaname = 'public' OR (schemaname = 'controlplane' AND {kinds[1]})"
                " OR (schemaname = 'auth' AND tablename IN ('users', 'identities'))",
            ):
                cursor.execute(
                    f"SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE {condition}"
                )
                tables = [row[0] for row in cursor.fetchall()]
                if tables:
                    cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def demo_phase0_problems_plant() -> None:
    """Put the seed's Phase 0 problems back into both databases (migration_jobs.demo.phase0)."""
    _claim(destructive="--with-phase0-problems")
    for database in ("revos", "unified"):
        phase0_problems_plant(database=database)


def demo_table_names() -> dict[str, tuple[str, ...]]:
    """The tables the demo fills, per database, in the order it fills them."""
    return {"revos": tuple(t.name for t in REVOS_TABLES), "unified": tuple(t.name for t in UNIFIED_TABLES)}
