@_exported import GatewayProtocol
