'use strict';
// Loaded by `tf run` through NODE_OPTIONS=--require: routes Node's global fetch through the
// TameFlare gateway. Node 20's fetch ignores HTTP(S)_PROXY, so this sets a global dispatcher:
//   1. undici's EnvHttpProxyAgent when the `undici` package resolves (from the project, or from
//      TF_NODE_MODULES, e.g. `.tf/node/node_modules` after `npm install --prefix .tf/node undici@7`);
//   2. otherwise Node's own bundled undici Agent with a connector that opens a CONNECT tunnel
//      through the gateway for https:// (no package needed); an http:// request is sent to
//      the gateway as a proxy request (absolute-form), as curl and Python clients send it:
//      a CONNECT tunnel there would carry plain HTTP where the gateway expects TLS.
// The gateway CA is trusted through NODE_EXTRA_CA_CERTS, which tf run also sets.
(function installTameFlareProxy() {
  const proxy = process.env.HTTPS_PROXY || process.env.https_proxy ||
    process.env.HTTP_PROXY || process.env.http_proxy;
  if (!proxy || typeof globalThis.fetch !== 'function') return;
  const kGlobalDispatcher = Symbol.for('undici.globalDispatcher.1');

  function fromPackage() {
    const paths = [process.cwd()];
    if (process.env.TF_NODE_MODULES) paths.push(process.env.TF_NODE_MODULES);
    let undici;
    try {
      undici = require(require.resolve('undici', { paths }));
    } catch (_) {
      return false;
    }
    if (typeof undici.EnvHttpProxyAgent !== 'function') return false;
    try {
      undici.setGlobalDispatcher(new undici.EnvHttpProxyAgent());
      return true;
    } catch (_) {
      return false;
    }
  }

  function builtinAgentClass() {
    // The first call loads Node's bundled undici, which registers its default Agent.
    fetch('data:,').catch(() => {});
    const current = globalThis[kGlobalDispatcher];
    return current && typeof current.constructor === 'function' ? current.constructor : null;
  }

  // NO_PROXY (tf run sets it to the control plane's host only): those hosts go direct.
  const noProxy = (process.env.NO_PROXY || process.env.no_proxy || '').split(',')
    .map((entry) => entry.trim().toLowerCase().replace(/^\*?\./, '')).filter(Boolean);

  function bypassed(hostname) {
    const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return noProxy.some((entry) => host === entry || host.endsWith('.' + entry));
  }

  function direct(host, port, https, opts, callback) {
    const net = require('net');
    const tls = require('tls');
    const bare = host.replace(/^\[|\]$/g, '');
    const socket = https
      ? tls.connect({ host: bare, port, servername: opts.servername ||
        (net.isIP(bare) ? undefined : bare), ALPNProtocols: ['http/1.1'] })
      : net.connect(port, bare);
    let settled = false;
    socket.once(https ? 'secureConnect' : 'connect', () => {
      if (!settled) { settled = true; callback(null, socket); }
    });
    socket.once('error', (err) => {
      if (!settled) { settled = true; socket.destroy(); callback(err, null); }
    });
  }

  function tunnelConnector() {
    const net = require('net');
    const tls = require('tls');
    const url = new URL(proxy);
    const auth = url.username
      ? 'Basic ' + Buffer.from(decodeURIComponent(url.username) + ':' +
        decodeURIComponent(url.password)).toString('base64')
      : null;
    const proxyPort = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const proxyHost = url.hostname.replace(/^\[|\]$/g, '');

    return function connect(opts, callback) {
      const https = opts.protocol === 'https:';
      const host = opts.hostname;
      const port = Number(opts.port) || (https ? 443 : 80);
      if (bypassed(host)) {
        direct(host, port, https, opts, callback);
        return;
      }
      const target = (host.includes(':') ? '[' + host + ']' : host) + ':' + port;
      const socket = net.connect(proxyPort, proxyHost);
      let settled = false;
      let buffer = Buffer.alloc(0);
      const fail = (err) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        callback(err, null);
      };
      const succeed = (sock) => {
        if (settled) return;
        settled = true;
        callback(null, sock);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        let head = 'CONNECT ' + target + ' HTTP/1.1\r\nHost: ' + target + '\r\n';
        if (auth) head += 'Proxy-Authorization: ' + auth + '\r\n';
        socket.write(head + '\r\n');
      });
      const onData = (chunk) => {
        buffer = Buffer.concat([buffer, chunk]);
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buffer.length > 65536) fail(new Error('TameFlare gateway answer too long'));
          return;
        }
        socket.removeListener('data', onData);
        const status = Number(buffer.subarray(0, end).toString('latin1').split(' ')[1]);
        if (status !== 200) {
          fail(new Error('TameFlare gateway refused CONNECT ' + target + ': HTTP ' + status));
          return;
        }
        const rest = buffer.subarray(end + 4);
        if (rest.length) socket.unshift(rest);
        socket.removeListener('error', fail);
        if (!https) {
          succeed(socket);
          return;
        }
        const secure = tls.connect({
          socket,
          servername: opts.servername || (net.isIP(host) ? undefined : host),
          ALPNProtocols: ['http/1.1'],
        });
        secure.once('secureConnect', () => succeed(secure));
        secure.once('error', fail);
      };
      socket.on('data', onData);
    };
  }

  // An http:// request as a proxy request: to the gateway, its target URL in the request
  // line, its own Host, and the agent's Proxy-Authorization.
  function proxied(opts) {
    const url = new URL(proxy);
    const target = new URL(opts.origin);
    const extra = { host: target.host };
    if (url.username) {
      extra['proxy-authorization'] = 'Basic ' + Buffer.from(decodeURIComponent(url.username) +
        ':' + decodeURIComponent(url.password)).toString('base64');
    }
    const headers = [];
    const raw = opts.headers || [];
    const pairs = Array.isArray(raw)
      ? (raw.length && Array.isArray(raw[0]) ? raw : raw.reduce((all, item, index) =>
        (index % 2 ? all[all.length - 1].push(item) : all.push([item]), all), []))
      : Object.entries(raw);
    for (const [name, value] of pairs) {
      const lower = String(name).toLowerCase();
      if (lower !== 'host' && lower !== 'proxy-authorization') headers.push(name, value);
    }
    for (const [name, value] of Object.entries(extra)) headers.push(name, value);
    return { ...opts, origin: url.origin, path: target.origin + opts.path, headers };
  }

  if (fromPackage()) return;
  const Agent = builtinAgentClass();
  if (!Agent) return;
  const toProxy = new Agent();
  class TameFlareAgent extends Agent {
    dispatch(opts, handler) {
      const origin = opts.origin ? new URL(opts.origin) : null;
      if (origin && origin.protocol === 'http:' && !bypassed(origin.hostname)) {
        return toProxy.dispatch(proxied(opts), handler);
      }
      return super.dispatch(opts, handler);
    }
  }
  globalThis[kGlobalDispatcher] = new TameFlareAgent({ connect: tunnelConnector() });
})();
