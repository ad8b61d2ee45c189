use super::cluster::cluster_state;
use super::*;
use std::net::TcpStream;

fn query(url: &str, command: &mut redis::Cmd) -> redis::Value {
    let mut connection = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    command.query(&mut connection).expect("query")
}

fn config_get(url: &str, name: &str) -> String {
    let (_, value): (String, String) =
        redis::from_redis_value(query(url, redis::cmd("CONFIG").arg("GET").arg(name)))
            .expect("pair");
    value
}

fn port_is_closed(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_err()
}

#[test]
fn starts_answers_ping_and_is_gone_after_drop() {
    let redis = RedisProcess::start(RedisProcessOptions::default()).expect("start redis");
    let (port, dir) = (redis.port(), redis.dir.clone());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(
        query(redis.url(), &mut redis::cmd("PING")),
        redis::Value::SimpleString("PONG".into())
    );
    assert_eq!(config_get(redis.url(), "save"), "");
    assert_eq!(config_get(redis.url(), "appendonly"), "no");
    assert_eq!(config_get(redis.url(), "maxmemory-policy"), "noeviction");
    drop(redis);
    assert!(port_is_closed(port), "port {port} still answers after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[test]
fn extra_args_override_defaults() {
    let options = RedisProcessOptions {
        extra_args: vec!["--maxmemory-policy".into(), "allkeys-lru".into()],
        ..Default::default()
    };
    let redis = RedisProcess::start(options).expect("start redis");
    assert_eq!(config_get(redis.url(), "maxmemory-policy"), "allkeys-lru");
}

#[test]
fn missing_binary_says_how_to_install() {
    let options = RedisProcessOptions {
        server_binary: Some("/nonexistent/redis-server".into()),
        ..Default::default()
    };
    let error = RedisProcess::start(options).expect_err("must fail");
    assert!(error.is_not_installed(), "{error:?}");
    assert!(
        error.to_string().contains("apt-get install redis-server"),
        "{error}"
    );
}

#[test]
fn bad_argument_fails_with_log_tail() {
    let options = RedisProcessOptions {
        extra_args: vec!["--no-such-option".into(), "1".into()],
        ..Default::default()
    };
    let error = RedisProcess::start(options).expect_err("must fail");
    assert!(
        matches!(error, RedisProcessError::Exited { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no-such-option"), "{error}");
}

#[test]
fn cluster_is_ok_spreads_keys_and_is_gone_after_drop() {
    use redis::cluster::ClusterClient;
    let cluster = RedisCluster::start(RedisProcessOptions::default()).expect("start cluster");
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    for url in &urls {
        assert_eq!(cluster_state(url).as_deref(), Ok("ok"), "{url}");
    }

    let client = ClusterClient::new(urls.clone()).expect("cluster client");
    let mut connection = client.get_connection().expect("cluster connection");
    for i in 0..30 {
        redis::cmd("SET")
            .arg(format!("key-{i}"))
            .arg(i)
            .query::<()>(&mut connection)
            .expect("SET");
    }
    let value: i64 = redis::cmd("GET")
        .arg("key-17")
        .query(&mut connection)
        .expect("GET");
    assert_eq!(value, 17);
    let sizes: Vec<i64> = urls
        .iter()
        .map(|url| redis::from_redis_value(query(url, &mut redis::cmd("DBSIZE"))).expect("DBSIZE"))
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 30, "{sizes:?}");
    assert!(
        sizes.iter().filter(|size| **size > 0).count() >= 2,
        "keys all on one node: {sizes:?}"
    );

    let ports: Vec<u16> = cluster.nodes().iter().map(RedisProcess::port).collect();
    drop((connection, cluster));
    for port in ports {
        assert!(
            port_is_closed(port),
            "cluster port {port} still answers after drop"
        );
    }
}
