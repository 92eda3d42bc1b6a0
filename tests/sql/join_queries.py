"""Queries over events and dimension tables: Petrel and DuckDB must agree on each.

``services`` has a duplicate key (two rows for api), a NULL key and a key
no event has; ``hosts`` misses some hosts and has a NULL host;
``no_services`` is empty; ``tiers`` is a registered in-memory table.
Queries with ORDER BY order their rows totally, so order is compared.
"""

QUERIES = [
    # -- inner joins, duplicate and NULL keys, multi-way, self joins
    "SELECT e.service, s.team, count(*) AS n FROM events e JOIN services s ON e.service = s.service GROUP BY ALL",
    "SELECT count(*) FROM events e JOIN services s ON e.service = s.service",
    "SELECT count(*) FROM events e, services s WHERE e.service = s.service AND s.tier_rank > 1",
    "SELECT s.team, h.region, count(*) AS n, sum(e.bytes) AS b FROM events e JOIN services s ON e.service = s.service "
    "JOIN hosts h ON e.host = h.host GROUP BY ALL",
    "SELECT count(*) FROM events e JOIN hosts h ON e.host = h.host AND h.cores >= 8",
    "SELECT count(*) FROM events e JOIN hosts h ON e.host = h.host AND e.latency_ms > h.cores * 10",
    "SELECT h.region, avg(e.latency_ms) AS l FROM hosts h JOIN events e ON h.host = e.host WHERE e.ok GROUP BY h.region",
    "SELECT a.service, count(*) AS n FROM services a JOIN services b ON a.service = b.service GROUP BY a.service",
    "SELECT a.host, b.host AS other FROM hosts a JOIN hosts b ON a.region = b.region AND a.host < b.host",
    "SELECT count(*) FROM events a JOIN events b ON a.user_id = b.user_id AND a.host = b.host AND a.url = b.url",
    "SELECT a.user_id, count(*) AS n FROM events a JOIN events b ON a.user_id = b.user_id AND a.service = b.service "
    "AND a.\"http.method\" = b.\"http.method\" AND a.host = b.host WHERE a.service = 'api' GROUP BY a.user_id",
    "SELECT count(*) FROM events e JOIN services s ON e.service = s.service JOIN hosts h ON e.host = h.host "
    "JOIN tiers t ON e.attrs.tier = t.tier",
    "SELECT t.tier, t.price, count(*) AS n FROM events e JOIN tiers t ON e.attrs.tier = t.tier GROUP BY ALL",
    "SELECT s.service, s.team FROM services s JOIN no_services n ON s.service = n.service",
    "SELECT count(*) FROM events e JOIN no_services n ON e.service = n.service",
    "SELECT e.service, e.attrs FROM events e JOIN hosts h ON e.host = h.host WHERE h.cores = 16 AND e.bytes < 2000",
    "SELECT e.url, h.region FROM events e JOIN hosts h ON e.host = h.host WHERE e.latency_ms > 600",
    "SELECT count(*) FROM events e JOIN services s ON lower(e.service) = s.service",
    "SELECT count(*) FROM events e JOIN hosts h ON e.host = h.host OR e.service = h.region",
    "SELECT s.team, count(DISTINCT e.user_id) AS users FROM events e JOIN services s ON e.service = s.service GROUP BY s.team",
    # -- outer joins
    "SELECT s.service, s.team, count(e.service) AS n FROM services s LEFT JOIN events e ON s.service = e.service GROUP BY ALL",
    "SELECT e.service, count(*) AS n, count(s.team) AS teams FROM events e LEFT JOIN services s ON e.service = s.service GROUP BY e.service",
    "SELECT h.host, h.region, count(e.host) AS n FROM hosts h LEFT JOIN events e ON h.host = e.host AND e.ok GROUP BY ALL",
    "SELECT h.host, count(e.host) AS n FROM events e RIGHT JOIN hosts h ON h.host = e.host GROUP BY h.host",
    "SELECT e.host, h.region, count(*) AS n FROM events e LEFT JOIN hosts h ON e.host = h.host GROUP BY ALL",
    "SELECT s.service, h.host FROM services s FULL OUTER JOIN hosts h ON s.tier_rank = h.cores",
    "SELECT s.service, n.team FROM services s FULL JOIN no_services n ON s.service = n.service",
    "SELECT e.service, s.team, count(*) AS n FROM events e FULL OUTER JOIN services s ON e.service = s.service GROUP BY ALL",
    "SELECT s.service, n.service AS other FROM services s LEFT JOIN no_services n ON s.service = n.service",
    "SELECT n.service, s.service AS other FROM no_services n RIGHT JOIN services s ON s.service = n.service",
    "SELECT h.host, s.service FROM hosts h LEFT JOIN services s ON h.cores = s.tier_rank * 4 WHERE s.service IS NULL",
    "SELECT s.service, h.host FROM services s LEFT JOIN hosts h ON s.tier_rank = h.cores AND h.region = 'eu-west'",
    "SELECT coalesce(s.service, 'none') AS svc, count(*) AS n FROM events e LEFT JOIN services s "
    "ON e.service = s.service AND s.team = 'core' GROUP BY 1",
    "SELECT count(*) FROM events a LEFT JOIN events b ON a.user_id = b.user_id AND a.url = b.url AND a.host = b.host "
    "AND a.timestamp < b.timestamp",
    "SELECT a.host, count(b.host) AS n FROM hosts a FULL JOIN events b ON a.host = b.host AND b.service = 'db' GROUP BY a.host",
    # -- cross joins
    "SELECT s.service, h.host FROM services s CROSS JOIN hosts h",
    "SELECT count(*) FROM services, hosts, tiers",
    "SELECT s.service, t.tier FROM services s CROSS JOIN tiers t WHERE t.price > 10",
    "SELECT count(*) FROM services s CROSS JOIN no_services n",
    "SELECT s.service, x.total FROM services s, (SELECT count(*) AS total FROM events) x",
    # -- IN / NOT IN / EXISTS / NOT EXISTS (semi and anti joins)
    "SELECT count(*) FROM events WHERE service IN (SELECT service FROM services)",
    "SELECT count(*) FROM events WHERE service NOT IN (SELECT service FROM services)",
    "SELECT count(*) FROM events WHERE service NOT IN (SELECT service FROM services WHERE service IS NOT NULL)",
    "SELECT count(*) FROM events WHERE service NOT IN (SELECT service FROM no_services)",
    "SELECT count(*) FROM events WHERE host IN (SELECT host FROM hosts WHERE region = 'eu-west')",
    "SELECT host FROM hosts WHERE host NOT IN (SELECT host FROM events WHERE host IS NOT NULL)",
    "SELECT service FROM services WHERE service IN (SELECT service FROM events WHERE latency_ms > 700)",
    "SELECT s.service FROM services s WHERE EXISTS (SELECT 1 FROM events e WHERE e.service = s.service)",
    "SELECT s.service FROM services s WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.service = s.service)",
    "SELECT h.host FROM hosts h WHERE EXISTS (SELECT * FROM events e WHERE e.host = h.host AND e.latency_ms > 500)",
    "SELECT h.host FROM hosts h WHERE NOT EXISTS (SELECT * FROM events e WHERE e.host = h.host AND NOT e.ok)",
    "SELECT count(*) FROM events e WHERE EXISTS (SELECT 1 FROM services s WHERE s.service = e.service AND s.tier_rank > e.attrs.retries)",
    "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM hosts h WHERE h.host = e.host AND h.cores > 4)",
    "SELECT s.service FROM services s WHERE EXISTS (SELECT 1 FROM no_services n WHERE n.service = s.service)",
    "SELECT s.service FROM services s WHERE NOT EXISTS (SELECT 1 FROM no_services n WHERE n.service = s.service)",
    "SELECT count(*) FROM events WHERE EXISTS (SELECT 1 FROM hosts WHERE cores > 100)",
    "SELECT count(*) FROM events WHERE NOT EXISTS (SELECT 1 FROM hosts WHERE cores > 100)",
    "SELECT count(*) FROM events e WHERE e.service IN (SELECT service FROM services) AND e.host NOT IN (SELECT host FROM hosts WHERE host IS NOT NULL)",
    "SELECT user_id, count(*) AS n FROM events WHERE user_id IN (SELECT user_id FROM events WHERE \"http.status_code\" = 503) GROUP BY user_id",
    "SELECT count(*) FROM events a WHERE EXISTS (SELECT 1 FROM events b WHERE b.user_id = a.user_id AND b.host <> a.host AND b.service = 'db')",
    "SELECT s.service, s.team FROM services s WHERE s.tier_rank NOT IN (SELECT x.tier_rank FROM services x WHERE x.team = s.team AND x.service <> s.service)",
    "SELECT h.host FROM hosts h WHERE h.cores NOT IN (SELECT s.tier_rank * 4 FROM services s WHERE s.team = h.region)",
    "SELECT count(*) FROM events e WHERE e.user_id NOT IN (SELECT x.user_id FROM events x WHERE x.host = e.host AND x.service = 'db')",
    "SELECT count(*) FROM events e WHERE e.service NOT IN (SELECT s.service FROM services s WHERE s.tier_rank = e.attrs.retries)",
    # -- scalar and correlated subqueries
    "SELECT count(*) FROM events WHERE latency_ms > (SELECT avg(latency_ms) FROM events)",
    "SELECT service, count(*) AS n FROM events WHERE bytes > (SELECT avg(bytes) FROM events) GROUP BY service",
    "SELECT (SELECT count(*) FROM services) AS s, (SELECT max(cores) FROM hosts) AS h",
    "SELECT host, (SELECT count(*) FROM services) AS total FROM hosts",
    "SELECT service, count(*) AS n FROM events GROUP BY service HAVING count(*) > (SELECT count(*) FROM events) / 6",
    "SELECT count(*) FROM events WHERE latency_ms > (SELECT max(latency_ms) FROM events WHERE service = 'nothing')",
    "SELECT count(*) FROM events e WHERE e.latency_ms > (SELECT avg(latency_ms) FROM events x WHERE x.service = e.service)",
    "SELECT e.host, count(*) AS n FROM events e WHERE e.bytes > (SELECT avg(x.bytes) * 1.5 FROM events x WHERE x.host = e.host) GROUP BY e.host",
    "SELECT h.host FROM hosts h WHERE h.cores * 100 < (SELECT count(*) FROM events e WHERE e.host = h.host)",
    "SELECT s.service, s.team FROM services s WHERE s.tier_rank = (SELECT max(tier_rank) FROM services x WHERE x.team = s.team)",
    "SELECT h.host FROM hosts h WHERE h.cores > (SELECT count(*) + 2 FROM events e WHERE e.host = h.host AND e.latency_ms > 900)",
    "SELECT s.service FROM services s WHERE 3 > (SELECT count(*) * 2 + count(DISTINCT h.region) FROM hosts h WHERE h.cores = s.tier_rank * 4)",
    # -- derived tables and CTEs
    "SELECT t.service, t.n FROM (SELECT service, count(*) AS n FROM events GROUP BY service) t WHERE t.n > 100",
    "SELECT max(n) AS m, min(n) AS l FROM (SELECT host, count(*) AS n FROM events GROUP BY host) AS per_host",
    "WITH per AS (SELECT service, avg(latency_ms) AS l FROM events GROUP BY service) SELECT p.service, p.l, s.team FROM per p LEFT JOIN services s ON p.service = s.service",
    "WITH a AS (SELECT host, count(*) AS n FROM events GROUP BY host), b AS (SELECT avg(n) AS m FROM a) SELECT a.host FROM a, b WHERE a.n > b.m",
    "WITH a AS (SELECT * FROM events WHERE ok), b AS (SELECT service, count(*) AS n FROM a GROUP BY service), "
    "c AS (SELECT b.service, b.n, s.team FROM b JOIN services s ON b.service = s.service) SELECT team, sum(n) AS total FROM c GROUP BY team",
    "WITH x AS (SELECT host FROM hosts WHERE cores > 4) SELECT count(*) FROM events WHERE host IN (SELECT host FROM x)",
    "WITH x AS (SELECT service, host, count(*) AS n FROM events GROUP BY ALL) SELECT a.service, a.host, a.n FROM x a "
    "WHERE a.n = (SELECT max(n) FROM x b WHERE b.service = a.service)",
    "SELECT d.region, d.n FROM (SELECT h.region, count(*) AS n FROM events e JOIN hosts h ON e.host = h.host GROUP BY h.region) d ORDER BY d.n DESC",
    # -- set operations with duplicates
    "SELECT service FROM events UNION SELECT service FROM services",
    "SELECT service FROM services UNION ALL SELECT service FROM services",
    "SELECT host FROM events INTERSECT SELECT host FROM hosts",
    "SELECT host FROM hosts EXCEPT SELECT host FROM events",
    "SELECT service FROM services INTERSECT ALL SELECT service FROM services WHERE team = 'core'",
    "SELECT service FROM services EXCEPT ALL SELECT service FROM services WHERE team = 'core'",
    "SELECT service, host FROM events WHERE latency_ms > 500 UNION SELECT service, 'none' FROM services",
    "SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 2",
    "SELECT service FROM no_services UNION SELECT service FROM services",
    "SELECT service FROM services EXCEPT SELECT service FROM no_services",
    "SELECT count(*) FROM (SELECT user_id FROM events UNION ALL SELECT user_id FROM events) t",
    "SELECT host FROM hosts UNION SELECT host FROM events ORDER BY host NULLS FIRST LIMIT 5",
    "SELECT bytes FROM events WHERE bytes > 49000 UNION SELECT cores FROM hosts",
    # -- VALUES and SELECT without FROM
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (2, 'b')) AS t(x, y)",
    "SELECT v.name, count(e.service) AS n FROM (VALUES ('api'), ('db'), ('nope')) AS v(name) LEFT JOIN events e ON e.service = v.name GROUP BY v.name",
    "SELECT 42 AS answer, 'x' || 'y' AS s",
    # -- window functions: ranking, ties, NULLs, frames
    "SELECT host, cores, row_number() OVER (ORDER BY cores, host) AS r FROM hosts",
    "SELECT host, cores, rank() OVER (ORDER BY cores) AS r, dense_rank() OVER (ORDER BY cores) AS d FROM hosts",
    "SELECT region, host, cores, rank() OVER (PARTITION BY region ORDER BY cores DESC) AS r FROM hosts",
    "SELECT service, team, tier_rank, dense_rank() OVER (PARTITION BY team ORDER BY tier_rank) AS d FROM services",
    "SELECT host, ntile(3) OVER (ORDER BY host) AS t FROM hosts",
    "SELECT service, host, n, ntile(2) OVER (PARTITION BY service ORDER BY n, host) AS t FROM "
    "(SELECT service, host, count(*) AS n FROM events GROUP BY ALL) x",
    "SELECT host, cores, lag(cores) OVER (ORDER BY host) AS p, lead(cores, 2, -1) OVER (ORDER BY host) AS nx FROM hosts",
    "SELECT service, host, n, lag(n) OVER (PARTITION BY service ORDER BY host) AS p FROM "
    "(SELECT service, host, count(*) AS n FROM events GROUP BY ALL) x",
    "SELECT host, first_value(cores) OVER (PARTITION BY region ORDER BY host) AS f, "
    "last_value(cores) OVER (PARTITION BY region ORDER BY host) AS l FROM hosts",
    "SELECT host, last_value(host) OVER (PARTITION BY region ORDER BY cores ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS l FROM hosts",
    "SELECT host, sum(cores) OVER (PARTITION BY region) AS total, count(*) OVER (PARTITION BY region) AS n FROM hosts",
    "SELECT host, cores, sum(cores) OVER (ORDER BY cores) AS running FROM hosts",
    "SELECT host, cores, sum(cores) OVER (ORDER BY cores, host ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM hosts WHERE host IS NOT NULL",
    "SELECT host, cores, avg(cores) OVER (ORDER BY host ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS m FROM hosts",
    "SELECT host, cores, min(cores) OVER (ORDER BY host ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS lo, "
    "max(cores) OVER (ORDER BY host ROWS BETWEEN CURRENT ROW AND 2 FOLLOWING) AS hi FROM hosts",
    "SELECT host, cores, min(cores) OVER (PARTITION BY region ORDER BY host) AS lo, max(cores) OVER (PARTITION BY region ORDER BY host) AS hi FROM hosts",
    "SELECT service, tier_rank, count(tier_rank) OVER (ORDER BY tier_rank) AS c, max(team) OVER (ORDER BY tier_rank) AS t FROM services",
    "SELECT service, hour, n, sum(n) OVER (PARTITION BY service ORDER BY hour) AS running, "
    "avg(n) OVER (PARTITION BY service ORDER BY hour ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg3 "
    "FROM (SELECT service, date_part('hour', timestamp) AS hour, count(*) AS n FROM events GROUP BY ALL) x",
    "SELECT service, count(*) AS n, rank() OVER (ORDER BY count(*) DESC) AS r FROM events GROUP BY service",
    "SELECT service, host, count(*) AS n, row_number() OVER (PARTITION BY service ORDER BY count(*) DESC, host) AS r "
    "FROM events GROUP BY service, host",
    "SELECT * FROM (SELECT service, host, count(*) AS n, rank() OVER (PARTITION BY service ORDER BY count(*) DESC) AS r "
    "FROM events GROUP BY service, host) x WHERE r = 1",
    "SELECT user_id, timestamp, lag(timestamp) OVER (PARTITION BY user_id ORDER BY timestamp) AS prev FROM events WHERE service = 'auth'",
    "SELECT user_id, count(*) AS sessions FROM (SELECT user_id, timestamp, lag(timestamp) OVER (PARTITION BY user_id ORDER BY timestamp) AS prev "
    "FROM events WHERE user_id IS NOT NULL) x WHERE prev IS NULL OR timestamp - prev > INTERVAL 20 MINUTE GROUP BY user_id",
    "SELECT service, latency_ms, percent FROM (SELECT service, latency_ms, rank() OVER (PARTITION BY service ORDER BY latency_ms DESC NULLS LAST) AS percent "
    "FROM events) x WHERE percent <= 3",
    "SELECT e.host, h.region, count(*) AS n, sum(count(*)) OVER (PARTITION BY h.region) AS region_total "
    "FROM events e JOIN hosts h ON e.host = h.host GROUP BY e.host, h.region",
    "SELECT region, host, cores, cores - lag(cores, 1, 0) OVER (PARTITION BY region ORDER BY cores, host) AS diff FROM hosts",
    "SELECT team, service, row_number() OVER (PARTITION BY team ORDER BY service NULLS FIRST, tier_rank) AS r FROM services",
    "SELECT \"http.status_code\" AS code, count(*) AS n, dense_rank() OVER (ORDER BY \"http.status_code\" NULLS FIRST) AS d FROM events GROUP BY 1",
    # -- ordering and limits over joins
    "SELECT e.service, s.team, e.latency_ms FROM events e JOIN services s ON e.service = s.service "
    "ORDER BY e.latency_ms DESC NULLS LAST, e.timestamp LIMIT 7",
    "SELECT h.region, count(*) AS n FROM events e JOIN hosts h ON e.host = h.host GROUP BY h.region ORDER BY n DESC",
    "SELECT DISTINCT s.team FROM services s JOIN events e ON s.service = e.service",
]
