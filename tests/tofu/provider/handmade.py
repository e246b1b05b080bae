"""Hand-made resource schemas for providers without a Pulumi schema to convert.

HAND-MADE, NOT GENERATED FROM A MACHINE-READABLE SCHEMA.  These were written by
hand from the providers' documentation and resource-schema sources at the
pinned tags (attribute names, types, Required/Optional/Computed, Sensitive,
RequiresReplace/ForceNew, deprecations).  Validators (OneOf, Between,
ConflictsWith, ExactlyOneOf, ...) and defaults are NOT modelled.  Re-check them
when a pin in ../versions.json moves.

  cloudflare/cloudflare 5.22.0   internal/services/<resource>/schema.go
                                  (terraform-plugin-framework: nested
                                  *attributes*, no blocks; docs/resources/*.md)

Scaleway is not here: its SDKv2 schemas are extracted from the Go source by
extract_sdkv2.py.

convert.py writes this to schemas/cloudflare.json.
"""

from __future__ import annotations

S, N, B = "string", "number", "bool"


def lst(t):
    return ["list", t]


def st(t):
    return ["set", t]


def mp(t):
    return ["map", t]


def req(t, **kw):
    return {"type": t, "required": True, **kw}


def opt(t, **kw):
    return {"type": t, "optional": True, **kw}


def optc(t, **kw):
    return {"type": t, "optional": True, "computed": True, **kw}


def comp(t, **kw):
    return {"type": t, "computed": True, **kw}


def nested(mode, attrs, **flags):
    """terraform-plugin-framework nested attribute."""
    return {"nested_type": {"nesting_mode": mode, "attributes": attrs}, **flags}


def block(attrs, blocks=None):
    b = {"attributes": attrs}
    if blocks:
        b["block_types"] = blocks
    return b


def blk(mode, attrs, blocks=None, **kw):
    """SDKv2 nested block."""
    return {"nesting_mode": mode, "block": block(attrs, blocks), **kw}


def resource(attrs, blocks=None, version=0):
    return {"version": version, "block": block(attrs, blocks)}


FORCE = {"force_new": True}

# --------------------------------------------------------------------------
# Cloudflare v5 (terraform-provider-cloudflare v5.22.0)


def _cf_origin_request():
    return nested(
        "single",
        {
            "access": nested(
                "single",
                {
                    "aud_tag": req(lst(S)),
                    "team_name": req(S),
                    "required": opt(B),
                },
                optional=True,
            ),
            "ca_pool": opt(S),
            "connect_timeout": opt(N),
            "disable_chunked_encoding": opt(B),
            "http2_origin": opt(B),
            "http_host_header": opt(S),
            "keep_alive_connections": opt(N),
            "keep_alive_timeout": opt(N),
            "match_sn_ito_host": opt(B),
            "no_happy_eyeballs": opt(B),
            "no_tls_verify": opt(B),
            "origin_server_name": opt(S),
            "proxy_type": opt(S),
            "tcp_keep_alive": opt(N),
            "tls_timeout": opt(N),
        },
        optional=True,
    )


def cloudflare() -> dict:
    dns_data_attrs = {
        # CAA / CERT / DNSKEY / DS / HTTPS / LOC / NAPTR / SMIMEA / SRV / SSHFP / SVCB / TLSA / URI
        "flags": opt("dynamic"),  # number or string
        "tag": opt(S),
        "value": opt(S),
        "algorithm": opt(N),
        "certificate": opt(S),
        "key_tag": opt(N),
        "type": opt(N),
        "protocol": opt(N),
        "public_key": opt(S),
        "digest": opt(S),
        "digest_type": opt(N),
        "priority": opt(N),
        "target": opt(S),
        "altitude": opt(N),
        "lat_degrees": opt(N),
        "lat_direction": opt(S),
        "lat_minutes": opt(N),
        "lat_seconds": opt(N),
        "long_degrees": opt(N),
        "long_direction": opt(S),
        "long_minutes": opt(N),
        "long_seconds": opt(N),
        "precision_horz": opt(N),
        "precision_vert": opt(N),
        "size": opt(N),
        "order": opt(N),
        "preference": opt(N),
        "regex": opt(S),
        "replacement": opt(S),
        "service": opt(S),
        "matching_type": opt(N),
        "selector": opt(N),
        "usage": opt(N),
        "port": opt(N),
        "weight": opt(N),
        "fingerprint": opt(S),
    }
    dns_record = resource(
        {
            "id": comp(S),
            "zone_id": req(S, **FORCE),
            "name": req(S),
            "type": req(S, **FORCE),
            "ttl": req(N),  # required in v5 (1 = automatic)
            "content": optc(S),
            "comment": opt(S),
            "priority": opt(N),
            "data": nested("single", dns_data_attrs, optional=True),
            "private_routing": opt(B),
            "proxied": optc(B),  # default false
            "tags": optc(st(S)),
            "settings": nested(
                "single",
                {"ipv4_only": optc(B), "ipv6_only": optc(B), "flatten_cname": optc(B)},
                optional=True,
                computed=True,
            ),
            "comment_modified_on": comp(S),
            "created_on": comp(S),
            "modified_on": comp(S),
            "proxiable": comp(B),
            "tags_modified_on": comp(S),
            "meta": comp(S),
        },
        version=500,
    )
    tunnel = resource(
        {
            "id": comp(S),
            "account_id": req(S, **FORCE),
            "name": req(S),
            "config_src": optc(S, **FORCE),  # "local" (default) or "cloudflare"; RequiresReplaceIfConfigured
            "tunnel_secret": opt(S, sensitive=True),
            "account_tag": comp(S),
            "conns_active_at": comp(S),
            "conns_inactive_at": comp(S),
            "created_at": comp(S),
            "deleted_at": comp(S),
            "remote_config": comp(B, deprecated=True, deprecation_message="Use the config_src field instead."),
            "status": comp(S),
            "tun_type": comp(S),
            "connections": nested(
                "list",
                {
                    "id": comp(S),
                    "client_id": comp(S),
                    "client_version": comp(S),
                    "colo_name": comp(S),
                    "is_pending_reconnect": comp(B),
                    "opened_at": comp(S),
                    "origin_ip": comp(S),
                    "uuid": comp(S),
                },
                computed=True,
            ),
            "metadata": comp(S),
        },
        version=500,
    )
    tunnel_config = resource(
        {
            "id": comp(S, **FORCE),
            "tunnel_id": req(S, **FORCE),
            "account_id": req(S, **FORCE),
            "config": nested(
                "single",
                {
                    "ingress": nested(
                        "list",
                        {
                            "hostname": opt(S),
                            "service": req(S),
                            "path": opt(S),
                            "origin_request": _cf_origin_request(),
                        },
                        optional=True,
                    ),
                    "origin_request": _cf_origin_request(),
                },
                optional=True,
                computed=True,
            ),
            "created_at": comp(S),
            "source": optc(S),
            "version": comp(N),
        },
        version=500,
    )
    # internal/services/zone_setting/schema.go at v5.22.0 (mirrors the real schema): `value` is
    # a Required DynamicAttribute (customfield.NormalizedDynamicType), zone_id/setting_id
    # RequiresReplace, modified_on a timetypes.RFC3339 string, time_remaining a Float64.
    zone_setting = resource(
        {
            "id": comp(S, **FORCE),
            "setting_id": req(S, **FORCE),
            "zone_id": req(S, **FORCE),
            "value": req("dynamic"),
            "enabled": optc(B),
            "editable": comp(B),
            "modified_on": comp(S),
            "time_remaining": comp(N),
        },
        version=500,
    )
    return {
        "source": {
            "hand_made": "tests/tofu/provider/handmade.py",
            "from": "terraform-provider-cloudflare v5.22.0 docs/resources and internal/services/*/schema.go",
            "terraform_provider": "cloudflare/cloudflare v5.22.0",
        },
        "address": "cloudflare/cloudflare",
        "version": "5.22.0",
        "provider": resource(
            {
                "api_token": opt(S, sensitive=True),
                "api_key": opt(S, sensitive=True),
                "email": opt(S),
                "api_user_service_key": opt(S, sensitive=True),
                "base_url": opt(S),
                "user_agent_operator_suffix": opt(S),
            }
        ),
        "resource_schemas": {
            "cloudflare_dns_record": dns_record,
            "cloudflare_zero_trust_tunnel_cloudflared": tunnel,
            "cloudflare_zero_trust_tunnel_cloudflared_config": tunnel_config,
            "cloudflare_zone_setting": zone_setting,
        },
    }
